"""The preprocessing plan (``plan.json``), derived from a dataset fingerprint by nnU-Net's rules.

- **Target spacing**: the median spacing of the training cases. For strongly anisotropic data (the
  coarsest axis more than 3x the spacing of the others, and that axis has fewer than a third of the
  voxels of the others) the coarse axis takes the 10th percentile of its spacings instead, so thin
  slices are not invented from thick ones for most cases.
- **Normalisation** per channel: CT clips to the foreground 0.5 and 99.5 percentiles and z-scores
  with the dataset's foreground mean and standard deviation; every other modality is z-scored per
  image, inside the non-zero mask when cropping removed a lot (median crop keeps < 75 %).
- **Patch size**: starts from the median shape after resampling (rounded down to a multiple of
  ``divisor``) and shrinks the axis that covers most of the median shape until an estimate of a
  U-Net's training memory fits ``memory_budget_mb``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from decathlon.errors import DatasetError, DecathlonError
from decathlon.fingerprint import Fingerprint
from decathlon.fsutil import atomic_write_json
from decathlon.orientation import CANONICAL

__all__ = [
    "DEFAULT_MEMORY_BUDGET_MB",
    "PLAN_VERSION",
    "ChannelNorm",
    "Plan",
    "check_patch_size",
    "estimate_memory_mb",
    "make_plan",
    "target_spacing",
    "with_patch_size",
]

PLAN_VERSION = 2  # 2: images reordered to the canonical orientation (RAS) first
DEFAULT_MEMORY_BUDGET_MB = 8192.0
ANISOTROPY_THRESHOLD = 3.0  # nnU-Net: spacing ratio beyond which an axis counts as anisotropic
NONZERO_MASK_BELOW = 0.75  # z-score inside the non-zero mask when cropping keeps less than this
# Tensors a U-Net keeps for backward per feature map and resolution level (encoder and decoder
# convolutions, norms, activations, up-sampling, concatenation); calibrated so a base-16, 4-level
# U-Net at 64^3 x 8 gives the ~3.4 GB measured on CPU (REFERENCE.md section 4).
TENSORS_PER_LEVEL = 16
MAX_BATCH_DATASET_SHARE = 0.05  # nnU-Net: a batch covers at most 5 % of the dataset's voxels

Scheme = Literal["ct", "zscore"]
LabelMode = Literal["linear", "nearest"]


@dataclass(frozen=True)
class ChannelNorm:
    """How one channel is normalised.

    Args:
        scheme: ``"ct"`` (clip, then dataset mean/std) or ``"zscore"`` (per-image mean/std).
        clip_low: lower clip (CT only).
        clip_high: upper clip (CT only).
        mean: dataset foreground mean (CT only).
        std: dataset foreground standard deviation (CT only).
        use_nonzero_mask: z-score inside the non-zero mask and set the outside to 0 (z-score only).
    """

    scheme: Scheme
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = None
    use_nonzero_mask: bool = False

    def __post_init__(self) -> None:
        if self.scheme not in ("ct", "zscore"):
            raise ValueError(f"normalisation scheme must be 'ct' or 'zscore', not {self.scheme!r}")
        if self.scheme == "ct":
            vals = (self.clip_low, self.clip_high, self.mean, self.std)
            if any(v is None or not math.isfinite(v) for v in vals):
                raise ValueError("CT normalisation needs finite clip_low, clip_high, mean, std")
            assert self.clip_low is not None and self.clip_high is not None
            if self.clip_low > self.clip_high:
                raise ValueError(f"clip_low {self.clip_low} > clip_high {self.clip_high}")
            if self.std is None or self.std <= 0:
                raise ValueError(f"CT normalisation std must be > 0, got {self.std}")


@dataclass(frozen=True)
class Plan:
    """Everything preprocessing, sampling and the networks need to agree on."""

    task_name: str
    modalities: tuple[str, ...]
    labels: dict[int, str]
    target_spacing: tuple[float, float, float]
    normalization: tuple[ChannelNorm, ...]
    patch_size: tuple[int, int, int]
    batch_size: int
    median_shape_after_resampling: tuple[int, int, int]
    divisor: int = 16
    image_order: int = 3
    label_mode: LabelMode = "linear"
    anisotropy_threshold: float = ANISOTROPY_THRESHOLD
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB
    estimated_memory_mb: float = 0.0
    orientation: str = CANONICAL
    version: int = PLAN_VERSION
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "labels", {int(k): str(v) for k, v in self.labels.items()})
        object.__setattr__(self, "target_spacing", tuple(float(s) for s in self.target_spacing))
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(
            self, "median_shape_after_resampling", tuple(self.median_shape_after_resampling)
        )
        object.__setattr__(self, "normalization", tuple(self.normalization))
        object.__setattr__(self, "notes", tuple(self.notes))
        if len(self.target_spacing) != 3 or min(self.target_spacing) <= 0:
            raise ValueError(f"target_spacing must be 3 positive numbers: {self.target_spacing}")
        if len(self.normalization) != len(self.modalities):
            raise ValueError(
                f"{len(self.normalization)} normalisations for {len(self.modalities)} modalities"
            )
        check_patch_size(self.patch_size, self.divisor)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.image_order not in (0, 1, 3):
            raise ValueError(f"image_order must be 0, 1 or 3, got {self.image_order}")
        if self.orientation != CANONICAL:
            raise ValueError(f"orientation must be {CANONICAL!r}, not {self.orientation!r}")
        if self.label_mode not in ("linear", "nearest"):
            raise ValueError(f"label_mode must be 'linear' or 'nearest', not {self.label_mode!r}")

    @property
    def num_channels(self) -> int:
        """Input channels (modalities)."""
        return len(self.modalities)

    @property
    def num_classes(self) -> int:
        """Output classes, background included."""
        return max(self.labels) + 1 if self.labels else 1

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """Label values other than 0."""
        return tuple(sorted(k for k in self.labels if k > 0))

    def preprocessing_hash(self) -> str:
        """Hash of the fields that change the preprocessed arrays (not patch or batch size)."""
        keys = (
            "version",
            "modalities",
            "labels",
            "target_spacing",
            "normalization",
            "image_order",
            "label_mode",
            "anisotropy_threshold",
            "orientation",
        )
        data = self.to_json()
        blob = json.dumps({k: data[k] for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        data = asdict(self)
        data["labels"] = {str(k): v for k, v in self.labels.items()}
        for key in ("modalities", "target_spacing", "patch_size", "median_shape_after_resampling"):
            data[key] = list(data[key])
        data["normalization"] = [asdict(n) for n in self.normalization]
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """Inverse of :meth:`to_json`."""
        if int(data["version"]) != PLAN_VERSION:
            old = int(data["version"]) < PLAN_VERSION
            raise ValueError(
                f"plan version {data['version']} is not {PLAN_VERSION}"
                + (
                    " (made before images were reordered to RAS; run `nasmed preprocess` again "
                    "and retrain models made with it)"
                    if old
                    else ""
                )
            )
        kwargs = dict(data)
        kwargs["normalization"] = tuple(ChannelNorm(**n) for n in data["normalization"])
        kwargs["median_shape_after_resampling"] = tuple(
            int(s) for s in data["median_shape_after_resampling"]
        )
        return cls(**kwargs)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``plan.json`` atomically; returns the path."""
        atomic_write_json(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        """Read a ``plan.json``.

        Raises:
            DatasetError: the file is missing, not JSON, or not a valid plan.
        """
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DatasetError(f"{p}: plan file not found; run `nasmed preprocess` first") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{p}: plan file is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise DatasetError(f"{p}: plan file must hold a JSON object")
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{p}: not a valid plan ({type(exc).__name__}: {exc})") from exc


def check_patch_size(patch_size: tuple[int, ...], divisor: int) -> None:
    """Raise :class:`DecathlonError` unless ``patch_size`` is 3 positive multiples of
    ``divisor``."""
    if divisor < 1:
        raise DecathlonError(f"divisor must be >= 1, got {divisor}")
    if len(patch_size) != 3 or any(int(p) < 1 or int(p) % divisor for p in patch_size):
        raise DecathlonError(
            f"patch size {tuple(patch_size)} must be 3 positive multiples of {divisor} "
            "(the network halves it that often)"
        )


def target_spacing(
    spacings: np.ndarray, shapes: np.ndarray, threshold: float = ANISOTROPY_THRESHOLD
) -> tuple[tuple[float, float, float], int | None]:
    """nnU-Net's full-resolution target spacing.

    Args:
        spacings: ``(N, 3)`` per-case spacings.
        shapes: ``(N, 3)`` per-case shapes (after cropping).
        threshold: spacing ratio that makes an axis anisotropic.

    Returns:
        The target spacing and the anisotropic axis whose spacing was lowered (or ``None``).
    """
    spacings = np.asarray(spacings, dtype=np.float64)
    target = np.percentile(spacings, 50, axis=0)
    median_shape = np.percentile(np.asarray(shapes, dtype=np.float64), 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    aniso_spacing = target[worst] > threshold * max(target[others])
    aniso_voxels = median_shape[worst] * threshold < min(median_shape[others])
    if not (aniso_spacing and aniso_voxels):
        return (float(target[0]), float(target[1]), float(target[2])), None
    lowered = float(np.percentile(spacings[:, worst], 10))
    # never finer than the in-plane spacing
    lowered = max(lowered, float(max(target[others])) + 1e-5)
    target[worst] = lowered
    return (float(target[0]), float(target[1]), float(target[2])), worst


def estimate_memory_mb(
    patch_size: tuple[int, int, int],
    *,
    batch_size: int,
    in_channels: int,
    num_classes: int,
    divisor: int = 16,
    base_features: int = 32,
    max_features: int = 320,
) -> float:
    """Rough training memory (MB, fp32 activations) of a U-Net on ``patch_size`` patches.

    Each of the ``log2(divisor) + 1`` resolution levels keeps :data:`TENSORS_PER_LEVEL` feature
    maps of ``min(base * 2**level, max)`` channels at ``1 / 8**level`` of the voxels.
    """
    levels = max(0, round(math.log2(divisor)))
    per_voxel = sum(
        min(base_features * 2**lvl, max_features) / 8**lvl * TENSORS_PER_LEVEL
        for lvl in range(levels + 1)
    )
    per_voxel += in_channels + 2 * num_classes
    voxels = float(np.prod(patch_size)) * batch_size
    return voxels * per_voxel * 4 / 2**20


def make_plan(
    fingerprint: Fingerprint,
    *,
    patch_size: tuple[int, int, int] | None = None,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    divisor: int = 16,
    batch_size: int | None = None,
) -> Plan:
    """Derive the preprocessing plan from a fingerprint.

    Args:
        fingerprint: the dataset fingerprint.
        patch_size: use this patch (3 multiples of ``divisor``) instead of choosing one.
        memory_budget_mb: what a training step may use; bounds the patch and batch.
        divisor: every patch axis is a multiple of it (``2**levels`` of the network).
        batch_size: fixed batch size; by default 2, more when the budget and data allow.

    Raises:
        DecathlonError: a given patch size is not a multiple of ``divisor``.
    """
    spacing, aniso_axis = target_spacing(fingerprint.spacings, fingerprint.shapes_after_crop)
    resampled = np.round(
        fingerprint.shapes_after_crop * fingerprint.spacings / np.asarray(spacing)
    ).astype(np.int64)
    median_shape = tuple(int(s) for s in np.median(resampled, axis=0).round())
    channels = len(fingerprint.modalities)
    classes = max(fingerprint.labels) + 1 if fingerprint.labels else 1
    notes: list[str] = []
    if aniso_axis is not None:
        notes.append(f"anisotropic axis {aniso_axis}: target spacing from its 10th percentile")

    def cost(patch: tuple[int, int, int], batch: int = 1) -> float:
        return estimate_memory_mb(
            patch, batch_size=batch, in_channels=channels, num_classes=classes, divisor=divisor
        )

    if patch_size is not None:
        patch = (int(patch_size[0]), int(patch_size[1]), int(patch_size[2]))
        check_patch_size(patch, divisor)
    else:
        patch = _fit_patch(
            median_shape, divisor, lambda p: cost(p, batch_size or 2) <= memory_budget_mb
        )
        if cost(patch, batch_size or 2) > memory_budget_mb:
            notes.append(f"even the smallest patch {patch} exceeds the memory budget")
    if batch_size is None:
        total_voxels = float(np.sum(np.prod(resampled, axis=1)))
        cap = int(MAX_BATCH_DATASET_SHARE * total_voxels / np.prod(patch))
        by_budget = int(memory_budget_mb // max(cost(patch), 1e-9))
        batch_size = max(2, min(by_budget, cap))
    norms = tuple(_channel_norm(m, fingerprint, c) for c, m in enumerate(fingerprint.modalities))
    return Plan(
        task_name=fingerprint.task_name,
        modalities=fingerprint.modalities,
        labels=fingerprint.labels,
        target_spacing=spacing,
        normalization=norms,
        patch_size=patch,
        batch_size=batch_size,
        median_shape_after_resampling=(median_shape[0], median_shape[1], median_shape[2]),
        divisor=divisor,
        memory_budget_mb=float(memory_budget_mb),
        estimated_memory_mb=round(cost(patch, batch_size), 1),
        notes=tuple(notes),
    )


def _fit_patch(median_shape: tuple[int, ...], divisor: int, fits: Any) -> tuple[int, int, int]:
    """Largest patch <= the median shape (multiples of ``divisor``) that ``fits``, shrinking the
    axis that covers the largest share of the median shape first."""
    patch = [max(divisor, (int(s) // divisor) * divisor) for s in median_shape]
    while not fits(tuple(patch)):
        candidates = [a for a in range(3) if patch[a] > divisor]
        if not candidates:
            break
        axis = max(candidates, key=lambda a: (patch[a] / max(median_shape[a], 1), patch[a]))
        patch[axis] -= divisor
    return (patch[0], patch[1], patch[2])


def _channel_norm(modality: str, fp: Fingerprint, channel: int) -> ChannelNorm:
    if modality.strip().lower() == "ct":
        s = fp.intensity[channel]
        return ChannelNorm(
            scheme="ct",
            clip_low=s.percentile_00_5,
            clip_high=s.percentile_99_5,
            mean=s.mean,
            std=max(s.std, 1e-8),
        )
    return ChannelNorm(
        scheme="zscore", use_nonzero_mask=fp.median_crop_fraction < NONZERO_MASK_BELOW
    )


def with_patch_size(plan: Plan, patch_size: tuple[int, int, int]) -> Plan:
    """A copy of ``plan`` with another patch size (checked against its divisor)."""
    check_patch_size(patch_size, plan.divisor)
    return replace(plan, patch_size=(int(patch_size[0]), int(patch_size[1]), int(patch_size[2])))
