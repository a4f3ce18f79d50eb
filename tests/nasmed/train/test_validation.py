"""validate_dice: sliding-window Dice on cached cases, against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from decathlon.errors import DatasetError
from decathlon.preprocess import load_cached_case, run_preprocess
from decathlon.synthetic import write_synthetic_task
from nasmed.train.validation import validate_dice


class _Constant(nn.Module):
    """Predicts class ``k`` everywhere."""

    def __init__(self, k: int, classes: int = 2) -> None:
        super().__init__()
        self.k, self.classes = k, classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((x.shape[0], self.classes, *x.shape[2:]))
        out[:, self.k] = 1.0
        return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("val")
    task = write_synthetic_task(root / "task", cases=2, shape=(24, 24, 16), classes=1, test_cases=0)
    run_preprocess(task, root / "work", workers=1, folds=2, progress=False)
    return root / "work" / "cache"


def _names(cache: Path) -> list[str]:
    return sorted(p.stem for p in cache.glob("*.json"))


def test_all_foreground_gives_the_dice_of_the_label_fraction(cache: Path) -> None:
    names = _names(cache)
    result = validate_dice(_Constant(1), cache, names, (16, 16, 16), num_classes=2)
    expected = []
    for name in names:
        _, seg, _ = load_cached_case(cache, name)
        assert seg is not None
        fg = float(np.count_nonzero(seg == 1))
        expected.append(2 * fg / (fg + seg.size))
    assert result["per_class"]["1"] == pytest.approx(np.mean(expected), rel=1e-5)
    assert result["dice"] == pytest.approx(np.mean(expected), rel=1e-5)


def test_all_background_scores_zero_and_network_mode_is_kept(cache: Path) -> None:
    net = _Constant(0).train()
    result = validate_dice(net, cache, _names(cache)[:1], (8, 8, 8), num_classes=2, overlap=0.5)
    assert result["dice"] == 0.0
    assert net.training


def test_deep_supervision_tuple_uses_the_full_resolution_output(cache: Path) -> None:
    class Tuple(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            full = _Constant(1)(x)
            return full, full[:, :, ::2, ::2, ::2]

    result = validate_dice(Tuple(), cache, _names(cache)[:1], (16, 16, 16), num_classes=2)
    assert result["dice"] > 0


def test_bad_inputs_raise(cache: Path) -> None:
    with pytest.raises(DatasetError, match="not in the cache"):
        validate_dice(_Constant(1), cache, ["nope"], (16, 16, 16), num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        validate_dice(_Constant(1), cache, _names(cache), (16, 16, 16), num_classes=1)
    with pytest.raises(ValueError, match="no validation cases"):
        validate_dice(_Constant(1), cache, [], (16, 16, 16), num_classes=2)
