"""Crop to the non-zero region, and paste back: the first step of nnU-Net's preprocessing.

The non-zero mask is the union over channels of ``voxel != 0`` with holes filled; its bounding box
is the crop. Brain MRI (skull-stripped, zero outside the head) shrinks a lot; CT barely at all.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["Box", "bbox_shape", "crop", "nonzero_bbox", "nonzero_mask", "paste"]

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
"""A crop box: ``((x0, x1), (y0, y1), (z0, z1))``, half-open, in voxels of the original grid."""


def nonzero_mask(array: np.ndarray) -> np.ndarray:
    """``(X, Y, Z)`` bool mask of voxels non-zero in any channel of ``array`` ``(C, X, Y, Z)``,
    with enclosed holes filled."""
    mask = np.any(array != 0, axis=0)
    if mask.all() or not mask.any():
        return mask
    return np.asarray(ndimage.binary_fill_holes(mask), dtype=bool)


def nonzero_bbox(array: np.ndarray) -> Box:
    """Bounding box of the non-zero voxels of ``array`` ``(C, X, Y, Z)``; the whole grid if none."""
    mask = np.any(array != 0, axis=0)
    spatial = mask.shape
    if not mask.any():
        return ((0, spatial[0]), (0, spatial[1]), (0, spatial[2]))
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append((int(hit[0]), int(hit[-1]) + 1))
    return (box[0], box[1], box[2])


def bbox_shape(box: Box) -> tuple[int, int, int]:
    """Spatial shape of the crop ``box``."""
    return (box[0][1] - box[0][0], box[1][1] - box[1][0], box[2][1] - box[2][0])


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """``array[..., x0:x1, y0:y1, z0:z1]`` (a view) for any leading axes."""
    return array[..., box[0][0] : box[0][1], box[1][0] : box[1][1], box[2][0] : box[2][1]]


def paste(
    array: np.ndarray, box: Box, shape: tuple[int, int, int], fill: float | np.ndarray = 0
) -> np.ndarray:
    """Put ``array`` ``(C, x, y, z)`` into a new ``(C, *shape)`` array at ``box``.

    Args:
        array: the cropped content; its spatial shape must equal the box's.
        box: where it goes in the full grid.
        shape: the full spatial shape.
        fill: value outside the box, a scalar or one value per channel.
    """
    if tuple(array.shape[1:]) != bbox_shape(box):
        raise ValueError(f"array shape {array.shape[1:]} does not match crop box {box}")
    out = np.empty((array.shape[0], *shape), dtype=array.dtype)
    out[...] = np.asarray(fill, dtype=array.dtype).reshape(-1, 1, 1, 1)
    crop(out, box)[...] = array
    return out
