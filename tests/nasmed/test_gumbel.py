"""The straight-through Gumbel-softmax sampler, temperature schedules, entropy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from nasmed.search.gumbel import TemperatureSchedule, entropy, gumbel_softmax_st


def test_hard_sample_is_one_hot_with_soft_gradient() -> None:
    logits = torch.tensor([[0.5, 1.0, -1.0, 0.0]], requires_grad=True)
    y = gumbel_softmax_st(logits, tau=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y.detach().sum(-1), torch.ones(1))
    assert set(y.detach().flatten().tolist()) == {0.0, 1.0}
    (y * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_same_generator_same_sample() -> None:
    logits = torch.randn(20, 7)
    a = gumbel_softmax_st(logits, 0.5, torch.Generator().manual_seed(3)).argmax(-1)
    b = gumbel_softmax_st(logits, 0.5, torch.Generator().manual_seed(3)).argmax(-1)
    c = gumbel_softmax_st(logits, 0.5, torch.Generator().manual_seed(4)).argmax(-1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_samples_follow_softmax() -> None:
    logits = torch.tensor([math.log(0.7), math.log(0.2), math.log(0.1)]).expand(20000, 3)
    idx = gumbel_softmax_st(logits, 1.0, torch.Generator().manual_seed(0)).argmax(-1)
    freq = torch.bincount(idx, minlength=3).float() / len(idx)
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.02)


def test_soft_mode_and_bad_temperature() -> None:
    y = gumbel_softmax_st(torch.zeros(3), 2.0, hard=False)
    assert torch.isclose(y.sum(), torch.tensor(1.0)) and (y > 0).all()
    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax_st(torch.zeros(3), 0.0)


@pytest.mark.parametrize("kind", ["linear", "exponential"])
def test_schedule_endpoints_and_monotone(kind: str) -> None:
    s = TemperatureSchedule(10.0, 0.1, steps=50, kind=kind)  # type: ignore[arg-type]
    values = [s(i) for i in range(60)]
    assert values[0] == pytest.approx(10.0) and values[49] == pytest.approx(0.1)
    assert values[59] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(values))
    if kind == "exponential":
        assert values[1] / values[0] == pytest.approx(values[2] / values[1])
    else:
        assert values[0] - values[1] == pytest.approx(values[1] - values[2])


def test_schedule_validation() -> None:
    with pytest.raises(ValueError):
        TemperatureSchedule(0.0, 0.1)
    with pytest.raises(ValueError):
        TemperatureSchedule(steps=0)


def test_entropy() -> None:
    assert entropy(torch.zeros(5)).item() == pytest.approx(math.log(5))
    assert entropy(torch.tensor([100.0, 0.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)
