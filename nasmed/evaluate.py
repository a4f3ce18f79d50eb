"""``evaluate(pred_dir, ref_dir)``: Dice, HD95 and normalised surface Dice per case and class.

Predictions and references are paired by case name (the file name without its image suffix);
each pair must have the same shape and affine. Per foreground class, with MONAI's metrics on the
binary masks: :class:`~monai.metrics.DiceMetric`, :class:`~monai.metrics.HausdorffDistanceMetric`
(95th percentile) and :class:`~monai.metrics.SurfaceDiceMetric`, both distances in millimetres
(the reference's voxel spacing is passed), NSD with a tolerance per class in mm.

Empty masks (documented choice, applied before MONAI is called):

==========================  ======  ======  ==========================================
case                        Dice    NSD     HD95
==========================  ======  ======  ==========================================
both empty                  1       1       0 mm (nothing to miss)
one empty, the other not    0       0       NaN (undefined; counted in ``hd95_undefined``)
==========================  ======  ======  ==========================================

Summaries are means and standard deviations over cases per class (HD95 over the cases where it
is defined) and the mean over classes. Written as ``metrics.json`` (NaN as ``null``) and
``metrics.csv`` (NaN as an empty cell).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDiceMetric

from decathlon.datalist import AFFINE_ATOL
from decathlon.errors import DatasetError
from decathlon.fsutil import atomic_write_json, atomic_write_text
from decathlon.io import image_suffix, read_geometry, read_image, strip_suffix
from decathlon.outputs import check_files, check_separate, record_files

__all__ = ["DEFAULT_NSD_TOLERANCE_MM", "evaluate", "format_summary", "pair_files"]

DEFAULT_NSD_TOLERANCE_MM = 1.0
#: The writer recorded for metrics.json / metrics.csv (:mod:`decathlon.outputs`).
VERB = "evaluate"
METRICS = ("dice", "hd95", "nsd")


def _images(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: {what} folder does not exist")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and image_suffix(p) and not p.name.startswith("."):
            name = strip_suffix(p)
            if name in out:
                raise DatasetError(f"{p}: case {name!r} appears twice in {folder}")
            out[name] = p
    if not out:
        raise DatasetError(f"{folder}: {what} folder holds no images")
    return out


def pair_files(
    pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str]
) -> list[tuple[str, Path, Path]]:
    """``(case, prediction, reference)`` for every case, checked: same names, shapes, affines.

    Raises:
        DatasetError: a folder is missing or empty, a case has no counterpart, or a pair's shapes
            or affines differ (one line naming the file).
    """
    preds = _images(Path(pred_dir), "prediction")
    refs = _images(Path(ref_dir), "reference")
    missing = sorted(set(refs) - set(preds))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{refs[missing[0]]}: no prediction for this case in {pred_dir}{more}")
    extra = sorted(set(preds) - set(refs))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise DatasetError(f"{preds[extra[0]]}: no reference for this case in {ref_dir}{more}")
    pairs = []
    for name in sorted(refs):
        pg, pc = read_geometry(preds[name])
        rg, rc = read_geometry(refs[name])
        if pc != 1 or rc != 1:
            bad = preds[name] if pc != 1 else refs[name]
            raise DatasetError(f"{bad}: a label map must have 1 channel, not {max(pc, rc)}")
        if pg.shape != rg.shape:
            raise DatasetError(
                f"{preds[name]}: shape {pg.shape} differs from the reference's {rg.shape} "
                f"({refs[name]})"
            )
        if not pg.allclose(rg, atol=AFFINE_ATOL):
            diff = float(np.max(np.abs(pg.affine - rg.affine)))
            raise DatasetError(
                f"{preds[name]}: affine differs from the reference's by up to {diff:.3g} mm "
                f"({refs[name]})"
            )
        pairs.append((name, preds[name], refs[name]))
    return pairs


def _tolerance(tol: float | Mapping[Any, float], label: int, name: str) -> float:
    if isinstance(tol, Mapping):
        for key in (label, str(label), name):
            if key in tol:
                return float(tol[key])
        return DEFAULT_NSD_TOLERANCE_MM
    return float(tol)


def _class_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], tolerance: float
) -> dict[str, float]:
    p_any, r_any = bool(pred.any()), bool(ref.any())
    if not p_any and not r_any:
        return {"dice": 1.0, "hd95": 0.0, "nsd": 1.0}
    if not p_any or not r_any:
        return {"dice": 0.0, "hd95": math.nan, "nsd": 0.0}
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    r = torch.from_numpy(ref[None, None].astype(np.float32))
    sp = [float(s) for s in spacing]
    with warnings.catch_warnings():  # MONAI's own deprecation notice about an internal call
        warnings.simplefilter("ignore", FutureWarning)
        dice = DiceMetric(include_background=True)(p, r)
        hd = HausdorffDistanceMetric(include_background=True, percentile=95)(p, r, spacing=sp)
        nsd = SurfaceDiceMetric(class_thresholds=[tolerance], include_background=True)(
            p, r, spacing=sp
        )
    values = [torch.as_tensor(v).reshape(-1)[0].item() for v in (dice, hd, nsd)]
    return {"dice": float(values[0]), "hd95": float(values[1]), "nsd": float(values[2])}


def _stats(values: list[float]) -> tuple[float, float, int]:
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return math.nan, math.nan, 0
    return float(np.mean(v)), float(np.std(v)), len(v)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def evaluate(
    pred_dir: str | os.PathLike[str],
    ref_dir: str | os.PathLike[str],
    *,
    labels: Sequence[int] | Mapping[int, str] | None = None,
    nsd_tolerance_mm: float | Mapping[Any, float] = DEFAULT_NSD_TOLERANCE_MM,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score the predictions in ``pred_dir`` against the references in ``ref_dir``.

    Args:
        pred_dir: predicted label maps (``<case>.nii.gz``, ...).
        ref_dir: reference label maps of the same names.
        labels: foreground labels to score (a list, or ``{value: name}``); default every
            non-zero value present in any reference or prediction.
        nsd_tolerance_mm: NSD tolerance in mm, one for all classes or per class
            (``{label value or name: mm}``; classes not named get 1 mm).
        out: a folder, or a ``.json`` file path: writes ``metrics.json`` and ``metrics.csv``
            (beside the JSON file); ``None`` writes nothing.

    Returns:
        ``{"cases": [per case and class rows], "summary": {class: stats, "mean": ...},
        "settings": ...}``; NaN where a value is undefined.

    Raises:
        DatasetError: missing or mismatched files (see :func:`pair_files`), bad tolerance.
    """
    pairs = pair_files(pred_dir, ref_dir)
    if out is not None:  # before any case is scored: the outputs may not replace an input
        json_path, csv_path = _out_paths(Path(out))
        check_separate(json_path, [ref_dir, *(f for pair in pairs for f in pair[1:])])
        check_files([json_path, csv_path], VERB)
    tolerances = (
        nsd_tolerance_mm.values() if isinstance(nsd_tolerance_mm, Mapping) else [nsd_tolerance_mm]
    )
    if any(not float(t) > 0 for t in tolerances):
        raise DatasetError(f"NSD tolerance must be > 0 mm, got {nsd_tolerance_mm}")
    loaded = []
    for name, pp, rp in pairs:
        pred = read_image(pp).array[0]
        ref = read_image(rp)
        loaded.append(
            (
                name,
                np.rint(pred).astype(np.int64),
                np.rint(ref.array[0]).astype(np.int64),
                ref.geometry.spacing,
            )
        )
    if labels is None:
        present: set[int] = set()
        for _, pred, ref, _ in loaded:
            present |= {int(v) for v in np.unique(ref)} | {int(v) for v in np.unique(pred)}
        names = {v: str(v) for v in sorted(present - {0})}
    elif isinstance(labels, Mapping):
        names = {int(k): str(v) for k, v in labels.items() if int(k) != 0}
    else:
        names = {int(v): str(v) for v in labels if int(v) != 0}
    if not names:
        raise DatasetError(f"{ref_dir}: no foreground label to score (all images are empty)")
    rows: list[dict[str, Any]] = []
    for case, pred, ref, spacing in loaded:
        for value, lname in names.items():
            tol = _tolerance(nsd_tolerance_mm, value, lname)
            m = _class_metrics(pred == value, ref == value, spacing, tol)
            rows.append(
                {
                    "case": case,
                    "label": value,
                    "name": lname,
                    **m,
                    "pred_voxels": int(np.count_nonzero(pred == value)),
                    "ref_voxels": int(np.count_nonzero(ref == value)),
                    "nsd_tolerance_mm": tol,
                }
            )
    summary: dict[str, Any] = {}
    for value, lname in names.items():
        mine = [r for r in rows if r["label"] == value]
        entry: dict[str, Any] = {"name": lname, "cases": len(mine)}
        for metric in METRICS:
            mean, sd, n = _stats([r[metric] for r in mine])
            entry[f"{metric}_mean"], entry[f"{metric}_sd"] = mean, sd
            if metric == "hd95":
                entry["hd95_undefined"] = len(mine) - n
        summary[str(value)] = entry
    summary["mean"] = {
        f"{metric}_mean": _stats([summary[str(v)][f"{metric}_mean"] for v in names])[0]
        for metric in METRICS
    }
    metrics: dict[str, Any] = {
        "settings": {
            "pred_dir": str(pred_dir),
            "ref_dir": str(ref_dir),
            "labels": {str(k): v for k, v in names.items()},
            "nsd_tolerance_mm": (
                {str(k): float(v) for k, v in nsd_tolerance_mm.items()}
                if isinstance(nsd_tolerance_mm, Mapping)
                else float(nsd_tolerance_mm)
            ),
            "empty_masks": "both empty: Dice 1, NSD 1, HD95 0; one empty: Dice 0, NSD 0, HD95 NaN",
        },
        "cases": rows,
        "summary": summary,
    }
    if out is not None:
        _write(Path(out), metrics)
    return metrics


def _out_paths(out: Path) -> tuple[Path, Path]:
    json_path = out if out.suffix == ".json" else out / "metrics.json"
    return json_path, json_path.with_suffix(".csv")


def _write(out: Path, metrics: dict[str, Any]) -> None:
    json_path, csv_path = _out_paths(out)
    record_files([json_path, csv_path], VERB)
    fields = ["case", "label", "name", *METRICS, "pred_voxels", "ref_voxels", "nsd_tolerance_mm"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in metrics["cases"]:
        writer.writerow(
            {
                k: "" if isinstance(row[k], float) and not math.isfinite(row[k]) else row[k]
                for k in fields
            }
        )
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_json(json_path, _clean(metrics))


def format_summary(metrics: dict[str, Any]) -> str:
    """The summary table ``nasmed evaluate`` prints."""

    def num(x: Any, digits: int = 4) -> str:
        return (
            "n/a"
            if x is None or (isinstance(x, float) and not math.isfinite(x))
            else f"{x:.{digits}f}"
        )

    header = f"{'class':<16} {'cases':>5} {'Dice':>15} {'HD95 mm':>17} {'NSD':>15}"
    lines = [header, "-" * len(header)]
    summary = metrics["summary"]
    for key, s in summary.items():
        if key == "mean":
            continue
        undefined = f" ({s['hd95_undefined']} n/a)" if s["hd95_undefined"] else ""
        lines.append(
            f"{key + ' ' + s['name'] if s['name'] != key else key:<16} {s['cases']:>5} "
            f"{num(s['dice_mean'])} ± {num(s['dice_sd'], 3):<6} "
            f"{num(s['hd95_mean'], 2)} ± {num(s['hd95_sd'], 2):<6}{undefined} "
            f"{num(s['nsd_mean'])} ± {num(s['nsd_sd'], 3)}"
        )
    m = summary["mean"]
    lines.append(
        f"{'mean':<16} {'':>5} {num(m['dice_mean']):>15} {num(m['hd95_mean'], 2):>17} "
        f"{num(m['nsd_mean']):>15}"
    )
    return "\n".join(lines)


def load_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``metrics.json``."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data
