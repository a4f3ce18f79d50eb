"""2D slice sets from a Decathlon task: images, multi-label targets, optional masks, cached.

Every slice of every (labelled) case along one axis becomes a sample:

* **orientation**: with ``reorient=True`` (default) each volume is first brought to the closest
  canonical RAS orientation (axis permutations and flips only, no resampling; nibabel's
  ``io_orientation``), so every case's slices show the anatomy the same way round even when the
  files are stored LPS, LAS or LPI. Array axis 2 is then the one closest to superior-inferior.
* **axis**: ``"auto"`` (default) picks the axis closest to the patient's superior-inferior (world
  z) direction, giving axial slices whatever the storage order: axis 2 after reorientation, or
  :func:`choose_axis` of the affine without it. An integer 0, 1 or 2 picks that array axis of
  ``(X, Y, Z)`` (of the reoriented array when ``reorient``: 0 sagittal, 1 coronal, 2 axial).
* **target**: a 0/1 vector over the task's foreground labels; class ``k`` is present when at
  least ``min_area`` voxels of the slice carry label ``k`` (measured before resizing).
* **image**: resized to ``size`` x ``size`` (bilinear, ``torch.nn.functional.interpolate``) and
  normalised per image: each case's channel to zero mean and unit standard deviation over the
  whole volume, so a slice keeps its intensity relative to the rest of its case (a constant
  channel becomes 0). **mask** (optional): the label slice resized with nearest neighbour.

A built set is cached in ``cache_dir`` as ``.npy`` arrays plus ``meta.json`` (written last, each
file atomically) under a key of the task's files (paths, sizes, mtimes) and the settings; a later
call with the same key loads it instead. Splits are made by **case** (:func:`split_by_case`), never
by slice, so no patient is on both sides.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from nibabel.orientations import apply_orientation, io_orientation

from decathlon.datalist import Case, Task, read_case
from decathlon.errors import DatasetError
from decathlon.fsutil import atomic_save_npy, atomic_write_json
from decathlon.io import Geometry

__all__ = ["SliceSet", "build_slices", "choose_axis", "slice_shape", "split_by_case"]

log = logging.getLogger(__name__)

CACHE_VERSION = 2


@dataclass(frozen=True)
class SliceSet:
    """Slices of several cases.

    Attributes:
        images: (N, C, H, W) float32, normalised per case and channel.
        targets: (N, K) uint8, K = the task's foreground labels.
        case_index: (N,) index into ``case_names`` of each slice's case.
        slice_index: (N,) position of the slice along ``axis`` in its volume.
        case_names: the cases, in order.
        class_names: the K foreground label names.
        axis: the array axis the slices were cut along.
        masks: (N, H, W) int16 label slices, or None.
    """

    images: np.ndarray
    targets: np.ndarray
    case_index: np.ndarray
    slice_index: np.ndarray
    case_names: tuple[str, ...]
    class_names: tuple[str, ...]
    axis: int
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def slice_cases(self) -> list[str]:
        """The case name of every slice."""
        return [self.case_names[i] for i in self.case_index]

    def select_cases(self, names: Sequence[str]) -> SliceSet:
        """The slices of the cases ``names`` (unknown names raise ``KeyError``)."""
        pos = {n: i for i, n in enumerate(self.case_names)}
        wanted = np.asarray([pos[n] for n in names], dtype=np.int64)
        keep = np.isin(self.case_index, wanted)
        remap = np.full(len(self.case_names), -1, dtype=np.int64)
        remap[wanted] = np.arange(len(wanted))
        return SliceSet(
            images=self.images[keep],
            targets=self.targets[keep],
            case_index=remap[self.case_index[keep]],
            slice_index=self.slice_index[keep],
            case_names=tuple(names),
            class_names=self.class_names,
            axis=self.axis,
            masks=None if self.masks is None else self.masks[keep],
        )


def choose_axis(geometry: Geometry) -> int:
    """The array axis whose world direction is closest to superior-inferior (world z)."""
    directions = geometry.affine[:3, :3] / np.linalg.norm(geometry.affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(directions[2])))


def _slice_axis(geometry: Geometry, axis: int | str, reorient: bool) -> int:
    if axis != "auto":
        return int(axis)
    return 2 if reorient else choose_axis(geometry)


def slice_shape(
    geometry: Geometry, axis: int | str = "auto", reorient: bool = True
) -> tuple[int, int]:
    """The (rows, columns) of the slices :func:`build_slices` cuts from an image of ``geometry``."""
    shape = np.asarray(geometry.shape)
    if reorient:
        shape = shape[np.argsort(io_orientation(geometry.affine)[:, 0])]
    ax = _slice_axis(geometry, axis, reorient)
    rows, cols = (int(s) for i, s in enumerate(shape) if i != ax)
    return rows, cols


def _resize(x: np.ndarray, size: int, mode: str) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x))
    if mode == "nearest":
        out = F.interpolate(t[:, None].float(), size=(size, size), mode="nearest")[:, 0]
        return out.numpy().astype(np.int16)
    out = F.interpolate(t.float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.numpy()


def _normalise(x: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    std = x.std(axis=(0, 2, 3), keepdims=True)
    return ((x - mean) / np.where(std > 1e-6, std, 1.0)).astype(np.float32)


def _case_slices(
    task: Task, case: Case, axis: int | str, size: int, min_area: int, masks: bool, reorient: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    image, label = read_case(case, num_channels=task.num_channels, labels=task.labels)
    if label is None:
        raise DatasetError(f"{task.root}: case {case.name} has no label; slices need labels")
    ax = _slice_axis(image.geometry, axis, reorient)
    array, lab = image.array, label.array[0]
    if reorient:
        ornt = io_orientation(image.geometry.affine)
        array = np.moveaxis(apply_orientation(np.moveaxis(array, 0, -1), ornt), -1, 0)
        lab = apply_orientation(lab, ornt)
    img = np.moveaxis(array, ax + 1, 1)  # (C, S, a, b)
    lab = np.moveaxis(lab, ax, 0)  # (S, a, b)
    imgs = _resize(np.ascontiguousarray(img.transpose(1, 0, 2, 3)), size, "bilinear")
    fg = task.foreground_labels
    areas = np.stack([(lab == v).sum(axis=(1, 2)) for v in fg], axis=1)
    targets = (areas >= min_area).astype(np.uint8)
    mask = _resize(lab, size, "nearest") if masks else None
    return _normalise(imgs), targets, mask, ax


def _cache_key(task: Task, cases: Sequence[Case], settings: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for case in cases:
        for f in case.files:
            st = f.stat()
            h.update(f"{case.name}|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _load_cached(folder: Path, key: str) -> SliceSet | None:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key or meta.get("version") != CACHE_VERSION:
            return None
        arrays = {n: np.load(folder / f"{n}.npy") for n in meta["arrays"]}
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: ignoring unreadable slice cache (%s)", folder, exc)
        return None
    log.info("slices: reusing cache %s", folder)
    return SliceSet(
        images=arrays["images"],
        targets=arrays["targets"],
        case_index=arrays["case_index"],
        slice_index=arrays["slice_index"],
        case_names=tuple(meta["case_names"]),
        class_names=tuple(meta["class_names"]),
        axis=int(meta["axis"]),
        masks=arrays.get("masks"),
    )


def _save_cache(folder: Path, key: str, s: SliceSet) -> None:
    arrays = {
        "images": s.images,
        "targets": s.targets,
        "case_index": s.case_index,
        "slice_index": s.slice_index,
    }
    if s.masks is not None:
        arrays["masks"] = s.masks
    for name, arr in arrays.items():
        atomic_save_npy(folder / f"{name}.npy", arr)
    meta = {
        "version": CACHE_VERSION,
        "key": key,
        "arrays": list(arrays),
        "case_names": list(s.case_names),
        "class_names": list(s.class_names),
        "axis": s.axis,
    }
    atomic_write_json(folder / "meta.json", meta)  # last: marks the cache complete


def build_slices(
    task: Task,
    *,
    cases: Sequence[str] | None = None,
    axis: int | str = "auto",
    size: int = 64,
    min_area: int = 1,
    masks: bool = False,
    reorient: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> SliceSet:
    """Cut the labelled cases of ``task`` into a :class:`SliceSet`.

    Args:
        task: a loaded task.
        cases: names of training cases to use (default: all).
        axis: ``"auto"`` (closest to superior-inferior) or an array axis 0, 1, 2.
        reorient: bring each volume to the closest canonical RAS orientation first.
        size: side of the square output slices.
        min_area: voxels a label needs in a slice to count as present.
        masks: also keep the resized label slices.
        cache_dir: folder for the cache (``None``: no cache).

    Raises:
        DatasetError: no cases, a bad axis or size, or cases cut along different axes.
    """
    if axis != "auto" and axis not in (0, 1, 2):
        raise DatasetError(f"slice axis must be auto, 0, 1 or 2, not {axis!r}")
    if size < 4 or min_area < 1:
        raise DatasetError(f"slices need size >= 4 and min_area >= 1, got {size}, {min_area}")
    chosen = [task.case(n) for n in cases] if cases is not None else list(task.training)
    if not chosen:
        raise DatasetError(f"{task.root}: no labelled training cases to slice")
    settings = {
        "reorient": reorient,
        "axis": axis,
        "size": size,
        "min_area": min_area,
        "masks": masks,
        "labels": {str(k): v for k, v in sorted(task.labels.items())},
    }
    folder = None
    if cache_dir is not None:
        key = _cache_key(task, chosen, settings)
        folder = Path(cache_dir) / f"slices-{key}"
        cached = _load_cached(folder, key)
        if cached is not None:
            return cached
    parts = [_case_slices(task, c, axis, size, min_area, masks, reorient) for c in chosen]
    axes = {p[3] for p in parts}
    if len(axes) > 1:
        raise DatasetError(
            f"{task.root}: cases are stored along different axes {sorted(axes)}; pass an axis"
        )
    out = SliceSet(
        images=np.concatenate([p[0] for p in parts]),
        targets=np.concatenate([p[1] for p in parts]),
        case_index=np.concatenate([np.full(len(p[1]), i, np.int64) for i, p in enumerate(parts)]),
        slice_index=np.concatenate([np.arange(len(p[1]), dtype=np.int64) for p in parts]),
        case_names=tuple(c.name for c in chosen),
        class_names=tuple(task.labels[v] for v in task.foreground_labels),
        axis=axes.pop(),
        masks=np.concatenate([p[2] for p in parts if p[2] is not None]) if masks else None,
    )
    if folder is not None:
        _save_cache(folder, key, out)
    return out


def split_by_case(
    case_names: Sequence[str], fractions: Sequence[float], seed: int = 0
) -> list[list[str]]:
    """Cut cases into disjoint, sorted groups of roughly ``fractions`` of the cases.

    Every group gets at least one case; the first group takes the rounding remainder.

    Raises:
        DatasetError: fewer cases than groups.
    """
    names = sorted(case_names)
    if len(names) < len(fractions):
        raise DatasetError(
            f"{len(names)} labelled cases cannot be split by case into {len(fractions)} groups"
        )
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    total = float(sum(fractions))
    counts = [max(1, round(len(names) * f / total)) for f in fractions[1:]]
    while sum(counts) > len(names) - 1:
        counts[int(np.argmax(counts))] -= 1
    counts = [len(names) - sum(counts), *counts]
    groups, start = [], 0
    for c in counts:
        groups.append(sorted(order[start : start + c]))
        start += c
    return groups
