"""AMP (bf16 autocast on CPU) and activation checkpointing (same gradients) for train and search."""

from __future__ import annotations

import copy

import pytest
import torch

import searchspaces
from nasmed.engine.activation import checkpoint_units, enable_activation_checkpointing
from nasmed.engine.precision import Precision, resolve_precision
from nasmed.errors import ConfigError
from nasmed.models.baselines import make_unet
from nasmed.search.config import SearchConfig
from nasmed.supernet import Supernet
from nasmed.train.config import TrainConfig

CPU = torch.device("cpu")


def test_precision_resolution() -> None:
    assert resolve_precision(None, "auto", CPU) == "fp32"  # None: CUDA only
    assert resolve_precision(True, "auto", CPU) == "bf16"
    assert resolve_precision(True, "bf16", torch.device("cuda")) == "bf16"
    assert resolve_precision(None, "auto", torch.device("cuda")) == "fp16"
    assert resolve_precision(False, "fp16", torch.device("cuda")) == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision(True, "fp16", CPU)
    with pytest.raises(ConfigError, match="--amp-dtype must be one of"):
        TrainConfig(amp_dtype="fp8")
    with pytest.raises(ConfigError, match="--amp-dtype must be one of"):
        SearchConfig(amp_dtype="half")


def test_bf16_autocast_runs_on_cpu_and_trains() -> None:
    torch.manual_seed(0)
    net = make_unet(1, 2, width=0.25, patch=(16, 16, 16))
    precision = Precision(resolve_precision(True, "auto", CPU), CPU)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(2, 1, 16, 16, 16)
    with precision.autocast():
        out = net(x)
    assert out.dtype == torch.bfloat16  # the convolutions ran in bfloat16
    loss = out.float().square().mean()
    before = [p.detach().clone() for p in net.parameters()]
    precision.backward(loss)
    precision.step(opt, net.parameters(), grad_clip=1.0)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # master weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert precision.state_dict() == {}  # no scaler under bf16


def _grads(net: torch.nn.Module, run: object) -> list[torch.Tensor]:
    net.zero_grad(set_to_none=True)
    run(net)  # type: ignore[operator]
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]


def test_activation_checkpointing_gives_the_same_gradients_unet() -> None:
    torch.manual_seed(0)
    plain = make_unet(1, 3, width=0.25, patch=(16, 16, 16))
    ckpt = copy.deepcopy(plain)
    assert enable_activation_checkpointing(ckpt) >= 1
    x = torch.randn(2, 1, 16, 16, 16)

    def run(net: torch.nn.Module) -> None:
        net(x).square().mean().backward()

    for a, b in zip(_grads(plain, run), _grads(ckpt, run)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert set(plain.state_dict()) == set(ckpt.state_dict())  # weights load either way


def test_activation_checkpointing_gives_the_same_gradients_supernet() -> None:
    space = searchspaces.load("scnas-small")
    torch.manual_seed(0)
    plain = Supernet(space, 1, 2, width=0.5)
    ckpt = copy.deepcopy(plain)
    units = checkpoint_units(ckpt)
    assert any(type(u).__name__ == "Cell" for u in units)
    enable_activation_checkpointing(ckpt)
    x = torch.randn(1, 1, 16, 16, 16)

    def run(net: torch.nn.Module) -> None:
        # the same sampled child in both (the Gumbel noise comes from a fixed generator)
        out = net(x, generator=torch.Generator().manual_seed(4))
        out.square().mean().backward()

    got, want = _grads(ckpt, run), _grads(plain, run)
    assert any(g.abs().sum() > 0 for g in want)
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    ckpt.eval()
    with torch.no_grad():  # eval / no grad: the plain forward
        torch.testing.assert_close(
            ckpt(x, generator=torch.Generator().manual_seed(1)),
            plain.eval()(x, generator=torch.Generator().manual_seed(1)),
        )
