"""The postprocessing decision is taken as nnU-Net takes it: validation predictions mapped back
onto each case's original grid and scored against the raw ``labelsTr`` label, not on the
resampled preprocessed grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from decathlon.cache import load_cached_case
from decathlon.datalist import load_task
from decathlon.preprocess import run_preprocess
from decathlon.synthetic import write_synthetic_task
from nasmed.postprocess import Postprocessing
from nasmed.postprocess_decide import decide_postprocessing, original_geometry_predictions


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pp")
    write_synthetic_task(root / "T", cases=2, shape=(40, 40, 24), test_cases=0, seed=3)
    run_preprocess(root / "T", root / "w", workers=0, progress=False)
    return root / "T", root / "w" / "cache"


def _oracle(seg: np.ndarray, num_classes: int, island: bool = False) -> torch.nn.Module:
    """A 'network' whose logits are the one-hot of ``seg`` (the cached, resampled label), plus
    optionally a false-positive island of class 1 in a corner. Used with the patch equal to
    the case's shape, so the sliding window calls it once on the whole case."""
    target = torch.as_tensor(np.asarray(seg[0], np.int64)).clone()
    if island:
        target[:3, :3, :3] = 1

    class Oracle(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert tuple(x.shape[2:]) == tuple(target.shape)
            logits = torch.nn.functional.one_hot(target, num_classes).permute(3, 0, 1, 2)
            return 10.0 * logits.float()[None].expand(x.shape[0], -1, -1, -1, -1)

    return Oracle()


def test_predictions_are_scored_on_the_original_grid(prepared: tuple[Path, Path]) -> None:
    task_dir, cache = prepared
    task = load_task(task_dir)
    name = task.training[0].name
    image, seg, _ = load_cached_case(cache, name, mmap=False)
    assert seg is not None
    raw = np.asarray(nib.load(task.training[0].label).dataobj)
    assert image.shape[1:] != raw.shape  # the plan resamples: the grids differ
    preds, refs = original_geometry_predictions(
        _oracle(seg, 3), task, cache, [name], image.shape[1:], device=torch.device("cpu")
    )
    assert preds[0].shape == raw.shape and np.array_equal(refs[0], raw)
    for k in (1, 2):  # the resampled truth, mapped back, is nearly the raw truth
        inter = np.sum((preds[0] == k) & (raw == k))
        assert 2 * inter / (np.sum(preds[0] == k) + np.sum(raw == k)) > 0.8


def test_spurious_island_is_removed_by_the_decision(prepared: tuple[Path, Path]) -> None:
    task_dir, cache = prepared
    task = load_task(task_dir)
    name = task.training[1].name
    image, seg, _ = load_cached_case(cache, name, mmap=False)
    assert seg is not None
    dev = torch.device("cpu")
    net = _oracle(seg, 3, island=True)
    post = decide_postprocessing(
        net, task, cache, [name], image.shape[1:], device=dev, num_classes=3
    )
    assert post is not None and (post.foreground or 1 in post.classes)  # the island goes
    assert post.dice_before is not None and post.dice_after is not None
    assert post.dice_after > post.dice_before
    clean = decide_postprocessing(
        _oracle(seg, 3), task, cache, [name], image.shape[1:], device=dev, num_classes=3
    )
    assert clean == Postprocessing()  # nothing to gain: nothing decided
    assert (
        decide_postprocessing(net, task, cache, [], image.shape[1:], device=dev, num_classes=3)
        is None
    )
