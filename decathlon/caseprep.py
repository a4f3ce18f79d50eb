"""Preprocess one case the nnU-Net way, and map results back onto its original grid.

Reorder the voxels to the canonical orientation (RAS, :mod:`decathlon.orientation`), crop to
the non-zero region (union over channels), normalise per channel (on the cropped grid),
resample to the plan's target spacing. The returned properties (original geometry, the
reordering, crop box and shapes in canonical order, separate axis) are what
:func:`restore_to_original` needs to put a prediction back exactly where the source image lies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decathlon.crop import bbox_shape, crop, nonzero_bbox, nonzero_mask, paste
from decathlon.errors import DatasetError
from decathlon.io import Image
from decathlon.normalize import normalize
from decathlon.orientation import reorientation_of
from decathlon.plan import Plan
from decathlon.properties import CaseProperties
from decathlon.resample import (
    resample_image,
    resample_label,
    resample_probabilities,
    resampled_shape,
    separate_axis,
)

__all__ = [
    "FG_SAMPLES_PER_CLASS",
    "PreprocessedCase",
    "preprocess_case",
    "restore_to_original",
]

FG_SAMPLES_PER_CLASS = 10_000  # foreground voxels remembered per class for oversampling


@dataclass(frozen=True)
class PreprocessedCase:
    """A case in preprocessed space.

    Args:
        array: float32 ``(C, x, y, z)`` image.
        seg: ``(1, x, y, z)`` label map (int8, or int16 past 127 classes), or ``None``.
        properties: what :func:`restore_to_original` needs.
        class_locations: per foreground class, up to :data:`FG_SAMPLES_PER_CLASS` voxels
            ``(N, 3)`` of that class.
    """

    array: np.ndarray
    seg: np.ndarray | None
    properties: CaseProperties
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
    reorient = reorientation_of(image)
    source_geometry = image.geometry
    canonical = reorient.geometry(image.geometry)
    image = Image(reorient.apply(image.array), canonical, image.path)
    if label is not None:
        label = Image(reorient.apply(label.array), canonical, label.path)
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
    properties = CaseProperties(
        geometry=source_geometry,
        orientation=reorient,
        crop_box=box,
        shape_after_crop=bbox_shape(box),
        shape_after_resampling=(int(new_shape[0]), int(new_shape[1]), int(new_shape[2])),
        original_spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        target_spacing=(
            float(plan.target_spacing[0]),
            float(plan.target_spacing[1]),
            float(plan.target_spacing[2]),
        ),
        separate_axis=axis,
        label_mode=plan.label_mode,
        channels=image.channels,
        plan_hash=plan.preprocessing_hash(),
        class_voxels={int(k): int(np.count_nonzero(seg == k)) for k in plan.foreground_labels}
        if seg is not None
        else {},
    )
    return PreprocessedCase(array, seg, properties, locations)


def restore_to_original(
    array: np.ndarray, properties: CaseProperties | Mapping[str, Any], *, is_label: bool
) -> np.ndarray:
    """Map an array in preprocessed space back onto the original image grid.

    Undoes the resampling (to the cropped shape), pastes into the crop box of the canonical
    grid, then puts the voxels back into the source's order. The result lies exactly on
    ``properties.geometry``.

    Args:
        array: ``(1, x, y, z)`` labels or ``(K, x, y, z)`` class probabilities, in the shape
            ``properties.shape_after_resampling``.
        properties: the case's properties from :func:`preprocess_case` or the cache (or
            their JSON form, :meth:`CaseProperties.to_json`).
        is_label: labels (per-class linear or nearest) or probabilities (linear; outside the
            crop box the background probability is 1).

    Returns:
        ``(1 or K, X, Y, Z)`` array on the original grid (labels keep their dtype, probabilities
        are float32).
    """
    props = (
        properties
        if isinstance(properties, CaseProperties)
        else CaseProperties.from_json(properties)
    )
    geometry = props.geometry
    reorient = props.orientation
    shape = reorient.canonical_shape
    box = props.crop_box
    expected = props.shape_after_resampling
    if tuple(array.shape[1:]) != expected:
        raise ValueError(
            f"array shape {tuple(array.shape[1:])} is not the preprocessed shape {expected}"
        )
    target = bbox_shape(box)
    axis = props.separate_axis
    if is_label:
        back = resample_label(np.asarray(array), target, mode=props.label_mode, axis=axis)
        out = reorient.undo(paste(back, box, shape, fill=0))
    else:
        back = resample_probabilities(np.asarray(array, dtype=np.float32), target, axis=axis)
        fill = np.zeros(back.shape[0], dtype=np.float32)
        fill[0] = 1.0
        out = reorient.undo(paste(back, box, shape, fill=fill))
    if tuple(out.shape[1:]) != geometry.shape:
        raise ValueError(f"restored shape {out.shape[1:]} is not the source's {geometry.shape}")
    return out
