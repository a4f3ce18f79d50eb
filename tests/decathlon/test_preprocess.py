"""Preprocessing: crop, normalise, resample; mapping back reproduces the original grid; cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from decathlon.datalist import load_task
from decathlon.errors import DatasetError, DecathlonError
from decathlon.fingerprint import fingerprint_arrays, fingerprint_task
from decathlon.io import Geometry, Image, read_image, write_image
from decathlon.plan import ChannelNorm, Plan, make_plan
from decathlon.preprocess import (
    load_cached_case,
    load_class_locations,
    preprocess_case,
    preprocess_task,
    restore_to_original,
    run_preprocess,
)
from decathlon.resample import resample_label, resampled_shape, separate_axis
from decathlon.synthetic import write_synthetic_task

SHAPE = (40, 36, 14)


def _rotation(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def _affine(kind: str) -> np.ndarray:
    spacing = np.diag([0.7, 0.7, 3.0])  # strongly anisotropic
    m = {
        "ras": np.eye(3),
        "lps": np.diag([-1.0, -1.0, 1.0]),
        "oblique": _rotation(17.0) @ np.diag([-1.0, 1.0, 1.0]),
    }[kind]
    affine = np.eye(4)
    affine[:3, :3] = m @ spacing
    affine[:3, 3] = [12.5, -30.0, 7.25]
    return affine


def _case(kind: str) -> tuple[Image, Image]:
    """A body (non-zero box, zero outside) holding two ellipsoids of different size."""
    geom = Geometry(_affine(kind), SHAPE)
    i, j, k = np.meshgrid(*(np.arange(s) for s in SHAPE), indexing="ij")
    rng = np.random.default_rng(0)
    array = np.zeros((1, *SHAPE), dtype=np.float32)
    body = (i >= 4) & (i < 36) & (j >= 3) & (j < 33) & (k >= 1) & (k < 13)
    array[0][body] = 200 + rng.normal(0, 10, body.sum())
    big = ((i - 18) / 9) ** 2 + ((j - 16) / 8) ** 2 + ((k - 7) / 3.5) ** 2 <= 1
    small = ((i - 29) / 3.5) ** 2 + ((j - 25) / 3.5) ** 2 + ((k - 6) / 2) ** 2 <= 1
    seg = np.zeros((1, *SHAPE), dtype=np.uint8)
    seg[0][big] = 1
    seg[0][small] = 2
    array[0][big] += 100
    array[0][small] += 250
    return Image(array, geom), Image(seg, geom)


def _plan(spacing: tuple[float, float, float], norm: ChannelNorm, **kw: object) -> Plan:
    return Plan(
        task_name="T",
        modalities=("MRI",),
        labels={0: "background", 1: "big", 2: "small"},
        target_spacing=spacing,
        normalization=(norm,),
        patch_size=(16, 16, 16),
        batch_size=2,
        median_shape_after_resampling=(32, 32, 32),
        **kw,  # type: ignore[arg-type]
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum(a & b) / max(np.sum(a) + np.sum(b), 1))


@pytest.mark.parametrize("kind", ["ras", "lps", "oblique"])
@pytest.mark.parametrize("label_mode", ["linear", "nearest"])
def test_preprocess_then_restore_reproduces_original_grid(
    kind: str, label_mode: str, tmp_path: Path
) -> None:
    image, label = _case(kind)
    plan = _plan((1.1, 1.1, 1.6), ChannelNorm("zscore"), label_mode=label_mode)
    pre = preprocess_case(image, label, plan)
    props = pre.properties
    assert props.crop_box == ((4, 36), (3, 33), (1, 13))
    assert props.shape_after_resampling == resampled_shape(
        (32, 30, 12), (0.7, 0.7, 3.0), (1.1, 1.1, 1.6)
    )
    assert pre.array.shape == (1, *props.shape_after_resampling)
    assert props.separate_axis == 2  # 3.0 / 0.7 > 3
    assert pre.seg is not None and pre.seg.dtype == np.int8

    back = restore_to_original(pre.seg, props, is_label=True)
    assert back.shape == label.array.shape
    geom = props.geometry
    assert geom.shape == SHAPE and np.array_equal(geom.affine, image.geometry.affine)
    for cls in (1, 2):
        assert _dice(back[0] == cls, label.array[0] == cls) > (0.9 if cls == 1 else 0.8)
    assert not back[0][:4].any() and not back[0][36:].any()  # outside the crop box

    # written with the restored geometry, the file lies exactly on the source grid
    path = write_image(tmp_path / "pred.nii.gz", back, geom)
    reread = read_image(path)
    assert reread.geometry.shape == SHAPE
    np.testing.assert_allclose(reread.geometry.affine, image.geometry.affine, atol=1e-5)


def test_restore_probabilities() -> None:
    image, label = _case("oblique")
    pre = preprocess_case(image, label, _plan((1.1, 1.1, 1.6), ChannelNorm("zscore")))
    assert pre.seg is not None
    onehot = np.stack([(pre.seg[0] == c) for c in range(3)]).astype(np.float32)
    probs = restore_to_original(onehot, pre.properties, is_label=False)
    assert probs.shape == (3, *SHAPE) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    assert np.all(probs[0, :4] == 1.0)  # background outside the crop box
    assert _dice(probs.argmax(0) == 1, label.array[0] == 1) > 0.9
    with pytest.raises(ValueError, match="preprocessed shape"):
        restore_to_original(onehot[:, :-1], pre.properties, is_label=False)


def test_ct_normalisation_clips_to_foreground_percentiles() -> None:
    image, label = _case("ras")
    image.array[0, 20, 18, 7] = 5000.0  # outliers beyond the percentiles
    image.array[0, 21, 18, 7] = -3000.0
    _, sampled = fingerprint_arrays(image, label, name="c", rng=np.random.default_rng(0))
    lo, hi = np.percentile(sampled[0], [0.5, 99.5])
    mean, std = float(sampled[0].mean()), float(sampled[0].std())
    norm = ChannelNorm("ct", clip_low=float(lo), clip_high=float(hi), mean=mean, std=std)
    plan = _plan(image.geometry.spacing, norm)  # same spacing: no resampling
    pre = preprocess_case(image, label, plan)
    assert pre.array.shape[1:] == (32, 30, 12)
    assert pre.array.max() == pytest.approx((hi - mean) / std, rel=1e-5)
    assert pre.array.min() == pytest.approx((lo - mean) / std, rel=1e-5)


def test_zscore_inside_nonzero_mask() -> None:
    image = Image(np.zeros((1, 20, 20, 20), np.float32), Geometry(np.eye(4), (20, 20, 20)))
    image.array[0, 5:15, 5:15, 5:15] = np.random.default_rng(0).normal(300, 40, (10, 10, 10))
    image.array[0, 5, 5, 5] = 0.0  # a hole inside stays in the mask
    image.array[0, 0, 0, 0] = 1.0  # a speck: the crop box grows, the mask covers both
    plan = _plan((1.0, 1.0, 1.0), ChannelNorm("zscore", use_nonzero_mask=True))
    out = preprocess_case(image, None, plan).array[0]
    body = out[5:15, 5:15, 5:15]
    assert body.mean() == pytest.approx(0.0, abs=0.05) and body.std() == pytest.approx(
        1.0, abs=0.05
    )
    assert np.all(out[6:, :5, :5] == 0.0)  # outside the mask


def test_resample_helpers() -> None:
    assert separate_axis((0.7, 0.7, 3.0), (1.0, 1.0, 1.0)) == 2
    assert separate_axis((1.0, 1.0, 1.0), (1.0, 4.0, 1.0)) == 1
    assert separate_axis((1.0, 1.0, 2.0), (1.0, 1.0, 2.0)) is None
    seg = np.zeros((1, 8, 8, 8), np.int16)
    seg[0, 2:6, 2:6, 2:6] = 3
    up = resample_label(seg, (16, 16, 16), mode="nearest")
    assert up.dtype == np.int16 and set(np.unique(up)) == {0, 3}
    assert np.array_equal(resample_label(up, (8, 8, 8), mode="linear"), seg)


@pytest.fixture()
def task_dir(tmp_path: Path) -> Path:
    return write_synthetic_task(tmp_path / "task", cases=4, test_cases=0, seed=1)


def _mtimes(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(cache.iterdir())}


def test_preprocess_task_skips_unchanged_and_redoes_changed(task_dir: Path, tmp_path: Path) -> None:
    task = load_task(task_dir)
    plan = make_plan(fingerprint_task(task, workers=1))
    cache = tmp_path / "cache"
    names = preprocess_task(task, plan, cache, workers=2, progress=False)
    assert names == [c.name for c in task.training]
    first = _mtimes(cache)
    assert {f"{n}{s}" for n in names for s in (".npy", "_seg.npy", "_fg.npy", ".json")} == set(
        first
    )

    preprocess_task(task, plan, cache, workers=2, progress=False)
    assert _mtimes(cache) == first  # nothing rewritten

    changed = task.training[1]
    st = changed.images[0].stat()
    os.utime(changed.images[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    preprocess_task(task, plan, cache, workers=1, progress=False)
    again = _mtimes(cache)
    redone = {k for k in first if again[k] != first[k]}
    assert redone == {f"{changed.name}{s}" for s in (".npy", "_seg.npy", "_fg.npy", ".json")}

    image, seg, props = load_cached_case(cache, changed.name)
    assert isinstance(image, np.memmap) and seg is not None
    assert image.dtype == np.float32 and seg.shape == (1, *image.shape[1:])
    assert props.plan_hash == plan.preprocessing_hash()
    locs = load_class_locations(cache, changed.name)
    for cls, voxels in locs.items():
        assert np.all(seg[0][tuple(voxels.T)] == cls)
    with pytest.raises(DatasetError, match="not in the cache"):
        load_cached_case(cache, "nope")


def test_run_preprocess_writes_everything(
    task_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    plan = run_preprocess(task_dir, work, workers=1, folds=2, progress=False)
    assert Plan.load(work / "plan.json") == plan
    assert {p.name for p in work.iterdir()} == {
        ".nasmed-outputs.json",  # the ledger: this folder is preprocess's work of this task
        "plan.json",
        "fingerprint.json",
        "cache",
        "splits.json",
    }
    first = _mtimes(work / "cache")

    def no_fingerprint(*args: object, **kwargs: object) -> None:
        raise AssertionError("unchanged sources must reuse fingerprint.json")

    monkeypatch.setattr("decathlon.preprocess.fingerprint_task", no_fingerprint)
    assert run_preprocess(task_dir, work, workers=1, folds=2, progress=False) == plan
    assert _mtimes(work / "cache") == first


def test_run_preprocess_bad_input_writes_nothing(task_dir: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DecathlonError, match="is a file"):
        run_preprocess(task_dir, afile, progress=False)
    work = tmp_path / "work"
    with pytest.raises(DatasetError):
        run_preprocess(tmp_path / "no_task", work, progress=False)
    with pytest.raises(DatasetError, match="too few for 5 folds"):
        run_preprocess(task_dir, work, folds=5, progress=False)
    with pytest.raises(DecathlonError, match="multiples of 16"):
        run_preprocess(task_dir, work, patch_size=(20, 16, 16), progress=False)
    assert not work.exists()
