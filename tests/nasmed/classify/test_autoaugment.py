"""Augmentation ops, policies (JSON round trip) and both searches on tiny data."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from decathlon.slices import SliceSet
from nasmed.classify.autoaugment.ops import OPS, apply_op
from nasmed.classify.autoaugment.policy import Policy, Step, SubPolicy, random_subpolicy
from nasmed.classify.autoaugment.search import (
    DEFAULT_POOL,
    FullSearchConfig,
    full_search,
    light_search,
    policy_loss,
)
from nasmed.classify.backbones import BackboneSpec
from nasmed.classify.saol import Classifier, build_classifier
from nasmed.errors import ConfigError

FLIPS = {"hflip", "vflip"}


def _batch() -> torch.Tensor:
    return torch.randn(3, 2, 16, 16)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("magnitude", [0.0, 0.5, 1.0])
def test_op_keeps_shape_and_dtype(name: str, magnitude: float) -> None:
    x = _batch()
    y = apply_op(name, x, magnitude, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    if magnitude > 0 and name not in FLIPS:
        assert not torch.equal(y, x), f"{name} at {magnitude} changed nothing"


@pytest.mark.parametrize("name", sorted(set(OPS) - FLIPS))
def test_magnitude_zero_is_identity(name: str) -> None:
    x = _batch()
    assert torch.equal(apply_op(name, x, 0.0, torch.Generator().manual_seed(0)), x)


@pytest.mark.parametrize("name", sorted(FLIPS))
def test_flips_are_involutions(name: str) -> None:
    x = _batch()
    g = torch.Generator()
    assert torch.equal(apply_op(name, apply_op(name, x, 1.0, g), 1.0, g), x)


def test_bad_magnitude() -> None:
    with pytest.raises(ValueError):
        apply_op("rotate", _batch(), 1.5, torch.Generator())
    with pytest.raises(ConfigError):
        Step("invert", 0.5, 0.5)
    with pytest.raises(ConfigError):
        Step("rotate", 1.5, 0.5)


def test_policy_json_round_trip(tmp_path: Path) -> None:
    rng = random.Random(0)
    pol = Policy(tuple(random_subpolicy(rng) for _ in range(4)))
    pol.save(tmp_path / "policy.json")
    back = Policy.load(tmp_path / "policy.json")
    assert back == Policy.from_json(pol.to_json())
    assert len(back) == 4 and all(len(sp.steps) == 2 for sp in back.sub_policies)
    for a, b in zip(pol.sub_policies, back.sub_policies):
        for sa, sb in zip(a.steps, b.steps):
            assert sa.op == sb.op and sa.prob == pytest.approx(sb.prob, abs=1e-6)
    assert Policy.load(tmp_path / "policy.json").to_json() == back.to_json()
    (tmp_path / "bad.json").write_text('{"schema": 1, "sub_policies": [[{"op": 3}]]}')
    with pytest.raises(ConfigError):
        Policy.load(tmp_path / "bad.json")


def test_policy_apply() -> None:
    x = _batch()
    g = torch.Generator().manual_seed(0)
    assert Policy().apply(x, g) is x
    always = Policy((SubPolicy((Step("hflip", 1.0, 0.0), Step("vflip", 1.0, 0.0))),))
    assert torch.equal(always.apply(x, g), x.flip(-1).flip(-2))
    never = Policy((SubPolicy((Step("rotate", 0.0, 1.0), Step("noise", 0.0, 1.0))),))
    assert torch.equal(never.apply(x, g), x)
    y = Policy(DEFAULT_POOL).apply(x, g)
    assert y.shape == x.shape and torch.equal(x, x)  # input untouched


def _model() -> Classifier:
    return build_classifier(BackboneSpec("resnet10", 1, 4), 2, "saol")


def test_light_search_returns_top_draws(toy: Callable[..., SliceSet]) -> None:
    s = toy(n_cases=2, per_case=8)
    x, y = torch.from_numpy(s.images), torch.from_numpy(s.targets.astype("float32"))
    pol = light_search(_model(), x, y, True, seconds=5.0, draws=6, per_draw=3, top=2)
    assert len(pol) == 6
    assert all(sp in DEFAULT_POOL for sp in pol.sub_policies)
    assert policy_loss(_model(), pol, x, y, True) > 0


def test_full_search_merges_top_n_per_fold(toy: Callable[..., SliceSet]) -> None:
    s = toy(n_cases=4, per_case=6)
    fits: list[int] = []

    def fit(d_m: object, seconds: float) -> Classifier:
        fits.append(len(d_m))  # type: ignore[arg-type]
        return _model()

    cfg = FullSearchConfig(folds=2, trials=3, top_n=2, sub_policies=2)
    pol, report = full_search(s, fit, True, seconds=20.0, cfg=cfg)
    assert fits == [12, 12]  # one model per fold, trained on D_M (the other cases)
    assert len(pol) == 2 * 2 * 2 and report["trials"] == 6
    assert report["seconds"] > 0
