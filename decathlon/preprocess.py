"""Preprocess cases the nnU-Net way and cache them; map predictions back to the original grid.

One case: crop to the non-zero region (union over channels), normalise per channel (on the
cropped original grid), resample to the plan's target spacing. The cache holds per case::

    <case>.npy        float32 (C, x, y, z) image, memory-mappable
    <case>_seg.npy    int8/int16 (1, x, y, z) label map
    <case>_fg.npy     int32 (N, 4) sampled foreground voxels: class, x, y, z (for the sampler)
    <case>.json       properties: original geometry, crop box, shapes, sources, plan hash

The JSON is written last, so a case whose JSON exists is complete. A re-run skips cases whose
source files (size, mtime) and plan hash are unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from decathlon.crop import Box, bbox_shape, crop, nonzero_bbox, nonzero_mask, paste
from decathlon.errors import DatasetError, DecathlonError
from decathlon.fingerprint import Fingerprint, fingerprint_task, source_stamp
from decathlon.fsutil import atomic_save_npy, atomic_write_json, ensure_out_dir
from decathlon.io import Geometry, Image
from decathlon.normalize import normalize
from decathlon.plan import DEFAULT_MEMORY_BUDGET_MB, Plan, check_patch_size, make_plan
from decathlon.resample import (
    resample_image,
    resample_label,
    resample_probabilities,
    resampled_shape,
    separate_axis,
)
from decathlon.splits import kfold_splits, save_splits

if TYPE_CHECKING:
    from decathlon.datalist import Case, Task

__all__ = [
    "FG_SAMPLES_PER_CLASS",
    "PreprocessedCase",
    "case_is_current",
    "load_cached_case",
    "load_class_locations",
    "preprocess_case",
    "preprocess_task",
    "restore_to_original",
    "run_preprocess",
]

log = logging.getLogger(__name__)

FG_SAMPLES_PER_CLASS = 10_000  # foreground voxels remembered per class for oversampling


@dataclass(frozen=True)
class PreprocessedCase:
    """A case in preprocessed space.

    Args:
        array: float32 ``(C, x, y, z)`` image.
        seg: ``(1, x, y, z)`` label map (int8, or int16 past 127 classes), or ``None``.
        properties: what :func:`restore_to_original` needs (plain JSON).
        class_locations: per foreground class, up to :data:`FG_SAMPLES_PER_CLASS` voxels
            ``(N, 3)`` of that class.
    """

    array: np.ndarray
    seg: np.ndarray | None
    properties: dict[str, Any]
    class_locations: dict[int, np.ndarray]


def _seg_dtype(plan: Plan) -> type[np.integer[Any]]:
    return np.int8 if plan.num_classes <= 127 else np.int16


def _class_locations(seg: np.ndarray, labels: Sequence[int], seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[int, np.ndarray] = {}
    for value in labels:
        where = np.argwhere(seg[0] == value)
        if len(where) > FG_SAMPLES_PER_CLASS:
            where = where[np.sort(rng.choice(len(where), FG_SAMPLES_PER_CLASS, replace=False))]
        if len(where):
            out[int(value)] = where.astype(np.int32)
    return out


def preprocess_case(image: Image, label: Image | None, plan: Plan) -> PreprocessedCase:
    """Crop, normalise and resample one case.

    Args:
        image: ``(C, X, Y, Z)`` image on its original grid.
        label: ``(1, X, Y, Z)`` label map on the same grid, or ``None`` (test cases).
        plan: the plan (target spacing, normalisation, interpolation).

    Returns:
        The preprocessed case; its ``properties`` map predictions back exactly.
    """
    if image.channels != plan.num_channels:
        raise DatasetError(
            f"{image.path or 'image'}: {image.channels} channels, the plan expects "
            f"{plan.num_channels} ({', '.join(plan.modalities)})"
        )
    if label is not None and tuple(label.array.shape[1:]) != tuple(image.array.shape[1:]):
        raise DatasetError(
            f"{label.path or 'label'}: shape {label.array.shape[1:]} differs from the image's "
            f"{image.array.shape[1:]}"
        )
    box = nonzero_bbox(image.array)
    cropped = crop(image.array, box)
    mask = nonzero_mask(cropped) if any(n.use_nonzero_mask for n in plan.normalization) else None
    normed = normalize(cropped, plan.normalization, mask)
    spacing = image.geometry.spacing
    new_shape = resampled_shape(bbox_shape(box), spacing, plan.target_spacing)
    axis = separate_axis(spacing, plan.target_spacing, plan.anisotropy_threshold)
    array = resample_image(normed, new_shape, order=plan.image_order, axis=axis)
    seg = None
    locations: dict[int, np.ndarray] = {}
    if label is not None:
        seg_src = crop(label.array, box).astype(_seg_dtype(plan))
        seg = resample_label(
            seg_src, new_shape, mode=plan.label_mode, axis=axis, labels=plan.foreground_labels
        )
        locations = _class_locations(seg, plan.foreground_labels, seed=1234)
    properties: dict[str, Any] = {
        "geometry": image.geometry.to_json(),
        "crop_box": [list(b) for b in box],
        "shape_after_crop": list(bbox_shape(box)),
        "shape_after_resampling": list(new_shape),
        "original_spacing": list(spacing),
        "target_spacing": list(plan.target_spacing),
        "separate_axis": axis,
        "label_mode": plan.label_mode,
        "channels": image.channels,
        "plan_hash": plan.preprocessing_hash(),
        "class_voxels": {str(k): int(np.count_nonzero(seg == k)) for k in plan.foreground_labels}
        if seg is not None
        else {},
    }
    return PreprocessedCase(array, seg, properties, locations)


def _box(properties: dict[str, Any]) -> Box:
    b = properties["crop_box"]
    return (
        (int(b[0][0]), int(b[0][1])),
        (int(b[1][0]), int(b[1][1])),
        (int(b[2][0]), int(b[2][1])),
    )


def restore_to_original(
    array: np.ndarray, properties: dict[str, Any], *, is_label: bool
) -> np.ndarray:
    """Map an array in preprocessed space back onto the original image grid.

    Undoes the resampling (to the cropped shape), then pastes into the crop box of the original
    shape. The result lies exactly on ``Geometry.from_json(properties["geometry"])``.

    Args:
        array: ``(1, x, y, z)`` labels or ``(K, x, y, z)`` class probabilities, in the shape
            ``properties["shape_after_resampling"]``.
        properties: the case's properties from :func:`preprocess_case` or the cache.
        is_label: labels (per-class linear or nearest) or probabilities (linear; outside the
            crop box the background probability is 1).

    Returns:
        ``(1 or K, X, Y, Z)`` array on the original grid (labels keep their dtype, probabilities
        are float32).
    """
    geometry = Geometry.from_json(properties["geometry"])
    box = _box(properties)
    expected = tuple(int(s) for s in properties["shape_after_resampling"])
    if tuple(array.shape[1:]) != expected:
        raise ValueError(
            f"array shape {tuple(array.shape[1:])} is not the preprocessed shape {expected}"
        )
    target = bbox_shape(box)
    axis = properties.get("separate_axis")
    if is_label:
        back = resample_label(
            np.asarray(array), target, mode=properties.get("label_mode", "linear"), axis=axis
        )
        return paste(back, box, geometry.shape, fill=0)
    back = resample_probabilities(np.asarray(array, dtype=np.float32), target, axis=axis)
    fill = np.zeros(back.shape[0], dtype=np.float32)
    fill[0] = 1.0
    return paste(back, box, geometry.shape, fill=fill)


# --- the cache -------------------------------------------------------------------------------


def _case_sources(case: Case) -> dict[str, list[int]]:
    return source_stamp(case.files)


def _paths(cache_dir: Path, name: str) -> dict[str, Path]:
    return {
        "image": cache_dir / f"{name}.npy",
        "seg": cache_dir / f"{name}_seg.npy",
        "fg": cache_dir / f"{name}_fg.npy",
        "props": cache_dir / f"{name}.json",
    }


def case_is_current(cache_dir: str | os.PathLike[str], case: Case, plan: Plan) -> bool:
    """True when the cache holds ``case`` made from its current source files with ``plan``."""
    paths = _paths(Path(cache_dir), case.name)
    try:
        props = json.loads(paths["props"].read_text(encoding="utf-8"))
        sources = _case_sources(case)
    except (OSError, ValueError):
        return False
    needed = ["image"] + (["seg", "fg"] if case.label is not None else [])
    return (
        props.get("plan_hash") == plan.preprocessing_hash()
        and props.get("sources") == sources
        and all(paths[k].is_file() for k in needed)
    )


def _write_case(cache_dir: Path, name: str, pre: PreprocessedCase, sources: dict[str, Any]) -> None:
    paths = _paths(cache_dir, name)
    paths["props"].unlink(missing_ok=True)  # the case is incomplete until its JSON is back
    atomic_save_npy(paths["image"], pre.array)
    if pre.seg is not None:
        atomic_save_npy(paths["seg"], pre.seg)
        rows = [
            np.concatenate([np.full((len(v), 1), k, dtype=np.int32), v], axis=1)
            for k, v in sorted(pre.class_locations.items())
        ]
        fg = np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int32)
        atomic_save_npy(paths["fg"], fg)
    atomic_write_json(paths["props"], {"name": name, **pre.properties, "sources": sources})


def _preprocess_one(args: tuple[Case, Plan, Path]) -> str:
    from decathlon.datalist import read_case

    case, plan, cache_dir = args
    sources = _case_sources(case)
    image, label = read_case(case, num_channels=plan.num_channels, labels=plan.labels)
    _write_case(cache_dir, case.name, preprocess_case(image, label, plan), sources)
    return case.name


def preprocess_task(
    task: Task,
    plan: Plan,
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 2,
    progress: bool = True,
) -> list[str]:
    """Preprocess every training case of ``task`` into the cache ``out_dir``.

    Cases already cached from the same source files and plan are skipped.

    Args:
        task: the loaded task.
        plan: the plan to apply.
        out_dir: the cache folder (created).
        workers: processes working in parallel (1: in this process).
        progress: show a tqdm bar.

    Returns:
        The names of all cached training cases, in task order.
    """
    cache = Path(out_dir)
    cache.mkdir(parents=True, exist_ok=True)
    todo = [c for c in task.training if not case_is_current(cache, c, plan)]
    skipped = len(task.training) - len(todo)
    if skipped:
        log.info("cache %s: %d case(s) unchanged, %d to preprocess", cache, skipped, len(todo))
    jobs = [(c, plan, cache) for c in todo]
    bar: dict[str, Any] = dict(
        total=len(jobs), desc="preprocess", unit="case", disable=not progress or not jobs
    )
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            for _ in tqdm(pool.map(_preprocess_one, jobs), **bar):
                pass
    else:
        for job in tqdm(jobs, **bar):
            _preprocess_one(job)
    return [c.name for c in task.training]


def load_cached_case(
    cache_dir: str | os.PathLike[str], name: str, mmap: bool = True
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Load a cached case: ``(image, seg or None, properties)``.

    Args:
        cache_dir: the cache folder (``WORK_DIR/cache``).
        name: the case name.
        mmap: memory-map the arrays read-only instead of reading them.

    Raises:
        DatasetError: the case is not in the cache (or incomplete).
    """
    paths = _paths(Path(cache_dir), name)
    try:
        props = json.loads(paths["props"].read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(
            f"{paths['props']}: case {name!r} is not in the cache; run `nasmed preprocess`"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{paths['props']}: unreadable cache properties ({exc})") from exc
    mode: Literal["r"] | None = "r" if mmap else None
    image = np.load(paths["image"], mmap_mode=mode, allow_pickle=False)
    seg = (
        np.load(paths["seg"], mmap_mode=mode, allow_pickle=False) if paths["seg"].exists() else None
    )
    return image, seg, props


def load_class_locations(cache_dir: str | os.PathLike[str], name: str) -> dict[int, np.ndarray]:
    """The cached foreground voxels of a case: ``{class: (N, 3) int32}`` (empty if none)."""
    path = _paths(Path(cache_dir), name)["fg"]
    if not path.exists():
        return {}
    rows = np.load(path, allow_pickle=False)
    return {int(k): rows[rows[:, 0] == k, 1:] for k in np.unique(rows[:, 0])}


# --- the whole stage -------------------------------------------------------------------------


def _reusable_fingerprint(path: Path, task: Task) -> Fingerprint | None:
    """The saved fingerprint, if it describes exactly the task's current training files."""
    if not path.is_file():
        return None
    try:
        fp = Fingerprint.load(path)
    except DatasetError:
        return None
    by_name = {c.name: c for c in fp.cases}
    if sorted(by_name) != sorted(c.name for c in task.training):
        return None
    try:
        current = all(by_name[c.name].sources == _case_sources(c) for c in task.training)
    except OSError:
        return None
    return fp if current else None


def run_preprocess(
    task_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    workers: int = 2,
    patch_size: tuple[int, int, int] | None = None,
    folds: int = 5,
    seed: int = 0,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    progress: bool = True,
) -> Plan:
    """Fingerprint, plan, preprocess and split a task (the API behind ``nasmed preprocess``).

    Writes ``WORK_DIR/fingerprint.json``, ``plan.json``, ``cache/`` and ``splits.json``. Inputs
    are checked (task, output path, patch size, folds) and every case is read before anything
    is written; a re-run reuses the fingerprint and cache of unchanged cases.

    Raises:
        DecathlonError: invalid task, unreadable case, output path is a file, bad patch or folds.
    """
    work = Path(work_dir)
    if work.exists() and not work.is_dir():
        raise DecathlonError(f"{work}: output path exists and is a file, not a folder")
    from decathlon.datalist import load_task

    task = load_task(task_dir)
    if not task.training:
        raise DatasetError(f"{task.root}: dataset.json lists no training cases")
    if patch_size is not None:
        check_patch_size(tuple(patch_size), 16)
    splits = kfold_splits([c.name for c in task.training], k=folds, seed=seed)
    fingerprint = _reusable_fingerprint(work / "fingerprint.json", task)
    if fingerprint is None:
        fingerprint = fingerprint_task(task, workers=workers, progress=progress)
    else:
        log.info("fingerprint: source files unchanged, reusing %s", work / "fingerprint.json")
    plan = make_plan(fingerprint, patch_size=patch_size, memory_budget_mb=memory_budget_mb)
    ensure_out_dir(work)
    fingerprint.save(work / "fingerprint.json")
    plan.save(work / "plan.json")
    preprocess_task(task, plan, work / "cache", workers=workers, progress=progress)
    save_splits(work / "splits.json", splits)
    return plan
