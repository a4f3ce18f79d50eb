"""decathlon.synthetic: real, valid, deterministic, non-trivial tasks written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import decathlon.synthetic as synthetic
from decathlon.datalist import load_task, read_case
from decathlon.errors import DecathlonError
from decathlon.outputs import OutputError
from decathlon.validate import validate_task

TINY = {"cases": 3, "shape": (16, 16, 8), "test_cases": 1}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_synth_output_passes_validation(tmp_path: Path) -> None:
    root = synthetic.write_synthetic_task(tmp_path / "Task99_Synth", classes=3, **TINY)
    assert root == tmp_path / "Task99_Synth"
    report = validate_task(root)
    assert report.ok, report.problems
    assert report.warnings == []
    task = load_task(root)
    assert task.modalities == ("CT",) and task.tensor_image_size == "3D"
    assert task.labels == {0: "background", 1: "organ1", 2: "organ2", 3: "lesion"}
    assert (len(task.training), len(task.test)) == (3, 1)
    summary = report.summary
    assert summary is not None and summary.cases_with_label == {1: 3, 2: 3, 3: 3}
    # the lesion is a small structure, organ 1 the largest
    assert summary.foreground_share[3] < summary.foreground_share[2]
    assert summary.foreground_share[2] < summary.foreground_share[1]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = synthetic.write_synthetic_task(tmp_path / "a", seed=3, modalities=2, **TINY)
    b = synthetic.write_synthetic_task(tmp_path / "b", seed=3, modalities=2, **TINY)
    c = synthetic.write_synthetic_task(tmp_path / "c", seed=4, modalities=2, **TINY)
    assert _files(a) == _files(b)
    fa, fc = _files(a), _files(c)
    assert fa.keys() == fc.keys()
    assert fa["imagesTr/synth_000.nii.gz"] != fc["imagesTr/synth_000.nii.gz"]


def test_geometry_is_non_trivial(tmp_path: Path) -> None:
    root = synthetic.write_synthetic_task(tmp_path / "t", cases=4, shape=(16, 16, 8), test_cases=0)
    task = load_task(root)
    geometries = [read_case(c)[0].geometry for c in task.training]
    orientations = {g.orientation for g in geometries}
    assert {"RAS", "LPS", "LAS"} <= orientations
    assert any(g.is_oblique for g in geometries)
    for g in geometries:
        sx, sy, sz = g.spacing
        assert sz > 1.4 * max(sx, sy)  # anisotropic
        assert np.linalg.norm(g.affine[:3, 3]) > 1.0


@pytest.mark.parametrize("modalities", [2, 4])
def test_multi_modal_is_a_4d_image(tmp_path: Path, modalities: int) -> None:
    root = synthetic.write_synthetic_task(tmp_path / "t", modalities=modalities, **TINY)
    task = load_task(root)
    assert task.tensor_image_size == "4D"
    assert task.modalities == synthetic.MRI_MODALITIES[:modalities]
    image, label = read_case(task.training[0], num_channels=modalities, labels=task.labels)
    assert image.array.shape == (modalities, 16, 16, 8)
    assert label is not None
    organ = label.array[0] == 1
    body = (label.array[0] == 0) & (image.array[0] > 0)
    # each modality maps the tissues differently
    contrast = [
        image.array[m][organ].mean() / image.array[m][body].mean() for m in range(modalities)
    ]
    assert np.ptp(contrast) > 0.05
    assert validate_task(root).ok


def test_ct_like_values_and_overlapping_intensities(tmp_path: Path) -> None:
    root = synthetic.write_synthetic_task(tmp_path / "t", cases=2, shape=(32, 32, 16), test_cases=0)
    task = load_task(root)
    image, label = read_case(task.training[0])
    assert label is not None
    ct = image.array[0]
    assert ct.min() >= -1024 and ct.max() <= 3071
    assert np.median(ct[label.array[0] == 0]) < -500  # mostly air outside the body
    organ = ct[label.array[0] == 1]
    lesion = ct[label.array[0] == 2]
    soft = ct[(label.array[0] == 0) & (ct > -200) & (ct < 200)]
    assert lesion.mean() < organ.mean()  # learnable: the means differ ...
    # ... but not trivially: the distributions overlap
    lo, hi = np.percentile(organ, [10, 90])
    assert ((soft > lo) & (soft < hi)).mean() > 0.2
    assert ((lesion > lo) & (lesion < hi)).mean() > 0.2


def test_mri_single_modality_option(tmp_path: Path) -> None:
    root = synthetic.write_synthetic_task(tmp_path / "t", ct=False, **TINY)
    assert load_task(root).modalities == ("T1w",)
    image, _ = read_case(load_task(root).training[0])
    assert image.array.min() >= 0.0


def test_output_is_a_file_or_not_empty(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(DecathlonError, match="is a file"):
        synthetic.write_synthetic_task(target, **TINY)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    with pytest.raises(DecathlonError, match="not empty"):
        synthetic.write_synthetic_task(full, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]
    with pytest.raises(OutputError, match="not by nasmed synth"):  # not synth's: never replaced
        synthetic.write_synthetic_task(full, overwrite=True, **TINY)
    assert (full / "keep.txt").read_text() == "x"
    ours = synthetic.write_synthetic_task(tmp_path / "ours", **TINY)
    (ours / "extra.txt").write_text("x")
    synthetic.write_synthetic_task(ours, overwrite=True, seed=3, **TINY)
    assert not (ours / "extra.txt").exists() and (ours / "dataset.json").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    synthetic.write_synthetic_task(empty, **TINY)
    assert (empty / "dataset.json").is_file()


@pytest.mark.parametrize(
    "bad",
    [{"cases": 0}, {"classes": 0}, {"modalities": 5}, {"shape": (4, 16, 16)}, {"test_cases": -1}],
)
def test_bad_arguments(tmp_path: Path, bad: dict[str, object]) -> None:
    args = dict(TINY, **bad)
    with pytest.raises(DecathlonError):
        synthetic.write_synthetic_task(tmp_path / "t", **args)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_crash_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = synthetic.write_image

    def flaky(*args: object, **kwargs: object) -> Path:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synthetic, "write_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_synthetic_task(tmp_path / "t", **TINY)
    assert list(tmp_path.iterdir()) == []


def test_embedded_task_written_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(synthetic.EMBEDDED_PARAMS, "cases", 2)
    monkeypatch.setitem(synthetic.EMBEDDED_PARAMS, "shape", (16, 16, 8))
    monkeypatch.setenv("NASMED_CACHE", str(tmp_path / "env"))
    first = synthetic.embedded_task(tmp_path / "cache")
    assert first == tmp_path / "cache" / synthetic.EMBEDDED_TASK_NAME
    assert validate_task(first).ok
    before = _files(first)
    stamp = (first / "dataset.json").stat().st_mtime_ns
    assert synthetic.embedded_task(tmp_path / "cache") == first
    assert (first / "dataset.json").stat().st_mtime_ns == stamp
    # an incomplete folder is rewritten with the same bytes
    (first / "labelsTr" / "synth_001.nii.gz").unlink()
    assert synthetic.embedded_task(tmp_path / "cache") == first
    assert _files(first) == before
    # $NASMED_CACHE is the default location
    from_env = synthetic.embedded_task()
    assert from_env == tmp_path / "env" / synthetic.EMBEDDED_TASK_NAME
    assert _files(from_env) == before


def test_default_task_is_fast_and_valid(tmp_path: Path) -> None:
    import time

    start = time.perf_counter()
    root = synthetic.write_synthetic_task(tmp_path / "t")
    seconds = time.perf_counter() - start
    assert seconds < 30  # a few seconds normally; generous for loaded CI machines
    task = load_task(root)
    assert (len(task.training), len(task.test)) == (8, 2)
    assert validate_task(root).ok
