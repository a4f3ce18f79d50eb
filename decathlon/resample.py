"""Resampling to a target spacing and back, the way nnU-Net does it.

Images use a cubic (or linear) spline; label maps use nearest neighbour or, by default, per-class
linear interpolation (each class as a one-hot channel, linear, then the class wherever its channel
reaches 0.5). When a case is strongly anisotropic (one axis coarser than ``threshold`` times the
finest), each slice across that axis is resampled in-plane and the anisotropic axis itself with
nearest neighbour, so thick slices are not blurred into each other.

Grids are aligned at voxel edges (``scipy.ndimage.zoom(grid_mode=True)``): resampling to a shape
and back to the original shape covers exactly the same field of view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "resample_image",
    "resample_label",
    "resample_probabilities",
    "resampled_shape",
    "separate_axis",
]


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]
) -> tuple[int, int, int]:
    """Shape of a ``shape`` grid with ``spacing`` resampled to ``target`` spacing (>= 1 voxel)."""
    new = np.maximum(np.round(np.asarray(shape) * np.asarray(spacing) / np.asarray(target)), 1)
    return (int(new[0]), int(new[1]), int(new[2]))


def separate_axis(
    spacing: Sequence[float], target: Sequence[float], threshold: float = 3.0
) -> int | None:
    """The axis to resample on its own (nearest neighbour), or ``None``.

    nnU-Net's rule: the case's coarsest axis if its spacing exceeds ``threshold`` times the finest;
    else the target's coarsest axis if the target is that anisotropic.
    """
    for s in (np.asarray(spacing, dtype=float), np.asarray(target, dtype=float)):
        if s.max() / s.min() > threshold:
            return int(np.argmax(s))
    return None


def _zoom3(
    volume: np.ndarray, new_shape: tuple[int, int, int], order: int, axis: int | None
) -> np.ndarray:
    """Resample one ``(X, Y, Z)`` float volume; ``axis`` (if any) goes separately, order 0."""
    if tuple(volume.shape) == new_shape:
        return volume.astype(np.float32, copy=True)
    factors = np.asarray(new_shape, dtype=float) / np.asarray(volume.shape, dtype=float)
    if axis is None:
        return np.asarray(
            ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True),
            dtype=np.float32,
        )
    in_plane = [a for a in range(3) if a != axis]
    plane_shape = tuple(new_shape[a] for a in in_plane)
    moved = np.moveaxis(volume, axis, 0)
    if plane_shape != moved.shape[1:]:
        plane_factors = [factors[a] for a in in_plane]
        moved = np.stack(
            [
                ndimage.zoom(sl, plane_factors, order=order, mode="nearest", grid_mode=True).astype(
                    np.float32, copy=False
                )
                for sl in moved
            ]
        )
    out = np.moveaxis(moved, 0, axis)
    if out.shape[axis] != new_shape[axis]:
        axis_factors = [1.0, 1.0, 1.0]
        axis_factors[axis] = factors[axis]
        out = ndimage.zoom(out, axis_factors, order=0, mode="nearest", grid_mode=True)
    return np.ascontiguousarray(out, dtype=np.float32)


def resample_image(
    array: np.ndarray,
    new_shape: tuple[int, int, int],
    *,
    order: int = 3,
    axis: int | None = None,
) -> np.ndarray:
    """Resample a ``(C, X, Y, Z)`` image to ``new_shape`` (float32).

    Args:
        array: the image.
        new_shape: the spatial shape wanted.
        order: spline order (3 cubic, 1 linear, 0 nearest).
        axis: the anisotropic axis to resample separately with nearest neighbour, or ``None``.
    """
    vol = np.asarray(array, dtype=np.float32)
    return np.stack([_zoom3(vol[c], new_shape, order, axis) for c in range(vol.shape[0])])


def resample_probabilities(
    array: np.ndarray, new_shape: tuple[int, int, int], *, axis: int | None = None
) -> np.ndarray:
    """Resample ``(K, X, Y, Z)`` class probabilities linearly (float32)."""
    return resample_image(array, new_shape, order=1, axis=axis)


def resample_label(
    seg: np.ndarray,
    new_shape: tuple[int, int, int],
    *,
    mode: str = "linear",
    axis: int | None = None,
    labels: Sequence[int] | None = None,
) -> np.ndarray:
    """Resample a ``(1, X, Y, Z)`` label map to ``new_shape``, keeping its dtype.

    Args:
        seg: the label map.
        new_shape: the spatial shape wanted.
        mode: ``"linear"`` (per-class one-hot, linear, >= 0.5) or ``"nearest"``.
        axis: the anisotropic axis to resample separately with nearest neighbour, or ``None``.
        labels: the foreground values to carry (default: those present in ``seg``).
    """
    src = np.asarray(seg)
    if tuple(src.shape[1:]) == new_shape:
        return src.copy()
    if mode == "nearest":
        vol = src[0].astype(np.float32)
        return _zoom3(vol, new_shape, 0, axis)[None].astype(src.dtype)
    if mode != "linear":
        raise ValueError(f"label resampling mode must be 'linear' or 'nearest', not {mode!r}")
    values = [int(v) for v in (np.unique(src) if labels is None else labels) if v != 0]
    out = np.zeros((1, *new_shape), dtype=src.dtype)
    for value in values:
        onehot = (src[0] == value).astype(np.float32)
        if not onehot.any():
            continue
        out[0][_zoom3(onehot, new_shape, 1, axis) >= 0.5] = value
    return out
