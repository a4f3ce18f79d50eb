"""A damaged cache file is found from its header and size: ``preprocess`` rebuilds the case,
loading it is one line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from decathlon.cache import check_cached_case
from decathlon.errors import DatasetError
from decathlon.preprocess import load_cached_case, run_preprocess
from decathlon.sampling import PatchDataset
from decathlon.synthetic import write_synthetic_task


@pytest.fixture()
def work(tmp_path: Path) -> tuple[Path, Path]:
    task = write_synthetic_task(
        tmp_path / "t", cases=2, shape=(24, 24, 16), classes=1, test_cases=0
    )
    work = tmp_path / "w"
    run_preprocess(task, work, workers=1, folds=2, patch_size=(16, 16, 16), progress=False)
    return task, work


@pytest.mark.parametrize("damage", ["truncate", "replace", "seg"])
def test_preprocess_rebuilds_a_damaged_case(work: tuple[Path, Path], damage: str) -> None:
    task, w = work
    cache = w / "cache"
    name = sorted(p.stem for p in cache.glob("*.json"))[0]
    target = cache / (f"{name}_seg.npy" if damage == "seg" else f"{name}.npy")
    good = target.read_bytes()
    if damage == "replace":
        np.save(target, np.zeros((1, 2, 2, 2), np.float32))
    else:
        os.truncate(target, len(good) // 2)
    problem = check_cached_case(cache, name)
    assert problem is not None and str(target) in problem
    with pytest.raises(DatasetError, match="rebuild it") as info:
        load_cached_case(cache, name)
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(DatasetError, match="cache file"):
        PatchDataset(cache, [name], (16, 16, 16), samples_per_epoch=2)
    other = sorted(p.stem for p in cache.glob("*.json"))[1]
    other_mtime = (cache / f"{other}.npy").stat().st_mtime_ns
    run_preprocess(task, w, workers=1, folds=2, patch_size=(16, 16, 16), progress=False)
    assert target.read_bytes() == good  # rebuilt, identical
    assert check_cached_case(cache, name) is None
    assert (cache / f"{other}.npy").stat().st_mtime_ns == other_mtime  # intact case kept
    image, seg, _ = load_cached_case(cache, name)
    assert image.ndim == 4 and seg is not None
