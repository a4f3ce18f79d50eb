"""``evaluate``: Dice, HD95 and NSD per case and class, empty masks, mismatched files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from decathlon.errors import DatasetError
from decathlon.io import Geometry, write_image
from nasmed.evaluate import evaluate, format_summary

SHAPE = (20, 20, 12)


def _geometry(spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Geometry:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 3.0)
    return Geometry(affine, SHAPE)


def _write(folder: Path, name: str, array: np.ndarray, geometry: Geometry | None = None) -> None:
    write_image(folder / f"{name}.nii.gz", array.astype(np.uint8), geometry or _geometry())


def _box(lo: tuple[int, int, int], hi: tuple[int, int, int], value: int = 1) -> np.ndarray:
    a = np.zeros(SHAPE, np.uint8)
    a[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = value
    return a


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    return pred, ref


def _row(metrics: dict, case: str, label: int) -> dict:
    return next(r for r in metrics["cases"] if r["case"] == case and r["label"] == label)


def test_metrics_per_case_and_class(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, ref = folders
    two = _box((2, 2, 2), (8, 8, 6)) + _box((12, 12, 6), (16, 16, 10), 2)
    _write(ref, "same", two)
    _write(pred, "same", two)
    _write(ref, "shift", _box((5, 5, 2), (12, 12, 8)))
    _write(pred, "shift", _box((7, 5, 2), (14, 12, 8)))  # 2 voxels along x
    metrics = evaluate(pred, ref, nsd_tolerance_mm={1: 1.0, 2: 3.0}, out=tmp_path / "m")
    same = _row(metrics, "same", 1)
    assert (
        same["dice"] == pytest.approx(1.0)
        and same["hd95"] == 0
        and same["nsd"] == pytest.approx(1.0)
    )
    shift = _row(metrics, "shift", 1)
    assert shift["dice"] == pytest.approx(2 * 5 * 7 * 6 / (2 * 7 * 7 * 6))
    assert shift["hd95"] == pytest.approx(2.0)
    assert 0 < shift["nsd"] < 1
    assert _row(metrics, "shift", 2)["dice"] == 1.0  # absent in both: documented as perfect
    assert _row(metrics, "shift", 2)["nsd_tolerance_mm"] == 3.0
    assert set(metrics["summary"]) == {"1", "2", "mean"}
    data = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert len(data["cases"]) == 4
    csv = (tmp_path / "m" / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("case,label,name,dice,hd95,nsd") and len(csv) == 5
    assert "Dice" in format_summary(metrics)


def test_distances_are_in_millimetres(folders: tuple[Path, Path]) -> None:
    pred, ref = folders
    g = _geometry((2.0, 1.0, 1.0))
    _write(ref, "a", _box((5, 5, 2), (12, 12, 8)), g)
    _write(pred, "a", _box((7, 5, 2), (14, 12, 8)), g)
    row = _row(evaluate(pred, ref), "a", 1)
    assert row["hd95"] == pytest.approx(4.0)  # 2 voxels of 2 mm
    row2 = _row(evaluate(pred, ref, nsd_tolerance_mm=4.0), "a", 1)
    assert row2["nsd"] == pytest.approx(1.0)


def test_empty_masks(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, ref = folders
    empty = np.zeros(SHAPE, np.uint8)
    blob = _box((2, 2, 2), (8, 8, 6))
    _write(ref, "both", empty)
    _write(pred, "both", empty)
    _write(ref, "pred_empty", blob)
    _write(pred, "pred_empty", empty)
    _write(ref, "ref_empty", empty)
    _write(pred, "ref_empty", blob)
    metrics = evaluate(pred, ref, labels=[1], out=tmp_path / "out.json")
    assert {k: _row(metrics, "both", 1)[k] for k in ("dice", "hd95", "nsd")} == {
        "dice": 1.0,
        "hd95": 0.0,
        "nsd": 1.0,
    }
    for case in ("pred_empty", "ref_empty"):
        r = _row(metrics, case, 1)
        assert r["dice"] == 0.0 and r["nsd"] == 0.0 and math.isnan(r["hd95"])
    assert metrics["summary"]["1"]["hd95_undefined"] == 2
    data = json.loads((tmp_path / "out.json").read_text())
    assert _row(data, "ref_empty", 1)["hd95"] is None  # NaN is null in JSON
    assert (tmp_path / "out.csv").is_file()


BAD_FILES = {
    "missing_pred": "no prediction for this case",
    "extra_pred": "no reference for this case",
    "shape": "differs from the reference's",
    "affine": "affine differs",
    "empty_dir": "holds no images",
}


def make_bad_files(kind: str, pred: Path, ref: Path) -> str:
    """Fill ``pred`` and ``ref`` with one kind of bad input; returns the expected message."""
    blob = _box((2, 2, 2), (8, 8, 6))
    if kind != "empty_dir":
        _write(ref, "a", blob)
        _write(pred, "a", blob)
    if kind == "missing_pred":
        _write(ref, "b", blob)
    elif kind == "extra_pred":
        _write(pred, "b", blob)
    elif kind == "shape":
        write_image(
            pred / "a.nii.gz", np.zeros((20, 20, 10), np.uint8), Geometry(np.eye(4), (20, 20, 10))
        )
    elif kind == "affine":
        shifted = _geometry().affine.copy()
        shifted[0, 3] += 1.5
        _write(pred, "a", blob, Geometry(shifted, SHAPE))
    return BAD_FILES[kind]


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_are_one_line_errors(kind: str, folders: tuple[Path, Path]) -> None:
    pred, ref = folders
    match = make_bad_files(kind, pred, ref)
    with pytest.raises(DatasetError, match=match) as info:
        evaluate(pred, ref, out=pred / "metrics.json")
    assert len(str(info.value).splitlines()) == 1
    assert not (pred / "metrics.json").exists()
