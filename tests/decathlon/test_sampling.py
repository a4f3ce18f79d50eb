"""Patch sampling: foreground oversampling, class balance, padding, deterministic loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from decathlon.errors import DatasetError
from decathlon.preprocess import run_preprocess
from decathlon.sampling import PatchDataset, PatchSampler, is_forced_foreground, make_loader
from decathlon.synthetic import write_synthetic_task


def _cases(n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        image = rng.normal(size=(2, 40, 40, 30)).astype(np.float32)
        seg = np.zeros((1, 40, 40, 30), np.int8)
        seg[0, 30:34, 30:34, 20:23] = 1  # a small structure, far from the centre
        seg[0, 5, 5, 5] = 2  # a single voxel of a rare class
        out.append((image, seg))
    return out


def test_forced_foreground_share_is_exact() -> None:
    flags = [is_forced_foreground(i, 1 / 3) for i in range(300)]
    assert sum(flags) == 100 and flags[:3] == [False, False, True]
    assert not any(is_forced_foreground(i, 0.0) for i in range(10))
    assert all(is_forced_foreground(i, 1.0) for i in range(10))


def test_forced_patches_hold_foreground_class_balanced() -> None:
    sampler = PatchSampler(_cases(), (16, 16, 16))
    rng = np.random.default_rng(0)
    classes = []
    for _ in range(200):
        image, seg = sampler.sample(rng, force_foreground=True)
        assert image.shape == (2, 16, 16, 16) and seg.shape == (1, 16, 16, 16)
        assert seg.max() > 0
        classes.append(set(np.unique(seg)) - {0})
    rare = sum(2 in c for c in classes) / len(classes)
    assert 0.35 < rare < 0.65  # the one-voxel class is drawn about half the time


def test_default_fraction_oversamples_foreground() -> None:
    sampler = PatchSampler(_cases(), (8, 8, 8), foreground_fraction=1 / 3)
    rng = np.random.default_rng(1)
    hits = sum(sampler.sample(rng)[1].max() > 0 for _ in range(600))
    assert hits / 600 >= 1 / 3 - 0.05  # random patches of this size almost never hit


def test_padding_when_case_smaller_than_patch() -> None:
    image = np.full((1, 6, 20, 5), 3.0, np.float32)
    seg = np.ones((1, 6, 20, 5), np.int8)
    sampler = PatchSampler([(image, seg)], (16, 16, 16), pad="min")
    rng = np.random.default_rng(0)
    for force in (True, False):
        img, lab = sampler.sample(rng, force_foreground=force)
        assert img.shape == (1, 16, 16, 16)
        assert int((lab > 0).sum()) == 6 * 16 * 5  # the whole short axes fit in the patch
        assert np.all(img[lab == 0] == 3.0)  # padded with the channel minimum
    zero = PatchSampler([(image, seg)], (16, 16, 16))
    img, lab = zero.sample(rng)
    assert np.all(img[lab == 0] == 0.0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("sampling")
    task = write_synthetic_task(root / "task", cases=4, test_cases=0, seed=2)
    run_preprocess(task, root / "work", workers=1, folds=2, progress=False)
    names = sorted(p.stem for p in (root / "work" / "cache").glob("*.json"))
    return root / "work" / "cache", names


def _batches(loader: torch.utils.data.DataLoader) -> list[dict]:  # type: ignore[type-arg]
    return list(loader)


def test_loader_deterministic_under_seed_with_workers(cache: tuple[Path, list[str]]) -> None:
    cache_dir, names = cache
    kw = dict(batch_size=2, samples_per_epoch=8, seed=5)
    a = _batches(make_loader(cache_dir, names, (16, 16, 16), workers=2, **kw))  # type: ignore[arg-type]
    b = _batches(make_loader(cache_dir, names, (16, 16, 16), workers=2, **kw))  # type: ignore[arg-type]
    c = _batches(make_loader(cache_dir, names, (16, 16, 16), workers=0, **kw))  # type: ignore[arg-type]
    assert len(a) == 4
    for x, y, z in zip(a, b, c, strict=True):
        assert x["image"].shape == (2, 1, 16, 16, 16) and x["image"].dtype == torch.float32
        assert x["label"].shape == (2, 1, 16, 16, 16) and x["label"].dtype == torch.int64
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
        assert torch.equal(x["image"], z["image"]) and x["case"] == y["case"] == z["case"]
    other = _batches(
        make_loader(
            cache_dir, names, (16, 16, 16), workers=0, batch_size=2, samples_per_epoch=8, seed=6
        )
    )
    assert not all(torch.equal(x["image"], y["image"]) for x, y in zip(a, other, strict=True))


def test_dataset_epochs_and_foreground_share(cache: tuple[Path, list[str]]) -> None:
    cache_dir, names = cache
    ds = PatchDataset(cache_dir, names, (16, 16, 16), samples_per_epoch=30, seed=0)
    first = [ds[i]["label"] for i in range(30)]
    fg = sum(bool((lab > 0).any()) for lab in first)
    assert fg >= 10  # at least one third
    assert all(bool((first[i] > 0).any()) for i in range(2, 30, 3))  # the forced ones
    ds.set_epoch(1)
    assert not all(torch.equal(ds[i]["label"], first[i]) for i in range(5))
    ds.set_epoch(0)
    assert torch.equal(ds[3]["label"], first[3])


def test_dataset_missing_case(cache: tuple[Path, list[str]]) -> None:
    with pytest.raises(DatasetError, match="not in the cache"):
        PatchDataset(cache[0], ["nope"], (16, 16, 16))
