"""Dataset fingerprint: what the plan is derived from (nnU-Net's ``dataset_fingerprint.json``).

Per case: voxel spacing, shape, shape after cropping to the non-zero region, voxels per class and
the size and modification time of its source files (so a later run knows what changed). Per
channel: intensity statistics of foreground voxels (label > 0), pooled from a fixed-size random
sample of every case, as nnU-Net does for its CT normalisation.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from decathlon.crop import bbox_shape, crop, nonzero_bbox
from decathlon.errors import DatasetError
from decathlon.fsutil import atomic_write_json
from decathlon.io import Image
from decathlon.orientation import reorientation_of

if TYPE_CHECKING:
    from decathlon.datalist import Case, Task
    from decathlon.io import Image

__all__ = [
    "FINGERPRINT_VERSION",
    "CaseFingerprint",
    "Fingerprint",
    "IntensityStats",
    "fingerprint_arrays",
    "fingerprint_task",
    "source_stamp",
]

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = 2  # 2: spacing and shapes in the canonical (RAS) axis order
SAMPLES_PER_CASE = 10_000  # foreground voxels drawn per case and channel (nnU-Net uses 10,000)


def source_stamp(paths: Iterable[str | os.PathLike[str]]) -> dict[str, list[int]]:
    """``{path: [size in bytes, mtime in ns]}``: what identifies a source file's version."""
    out: dict[str, list[int]] = {}
    for p in paths:
        st = os.stat(p)
        out[str(p)] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


@dataclass(frozen=True)
class IntensityStats:
    """Foreground intensity statistics of one channel."""

    mean: float
    std: float
    median: float
    percentile_00_5: float
    percentile_99_5: float
    min: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> IntensityStats:
        """Statistics of a 1D sample (all zeros when empty)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return cls(0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        lo, med, hi = np.percentile(v, [0.5, 50.0, 99.5])
        return cls(
            float(v.mean()),
            float(v.std()),
            float(med),
            float(lo),
            float(hi),
            float(v.min()),
            float(v.max()),
        )


@dataclass(frozen=True)
class CaseFingerprint:
    """What the plan needs to know about one training case."""

    name: str
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    shape_after_crop: tuple[int, int, int]
    class_voxels: dict[int, int]
    sources: dict[str, list[int]] = field(default_factory=dict)

    @property
    def crop_fraction(self) -> float:
        """Voxels kept by the non-zero crop, as a fraction of all voxels."""
        return float(np.prod(self.shape_after_crop) / np.prod(self.shape))


@dataclass(frozen=True)
class Fingerprint:
    """The fingerprint of a task: per-case geometry and per-channel foreground intensities."""

    task_name: str
    modalities: tuple[str, ...]
    labels: dict[int, str]
    cases: tuple[CaseFingerprint, ...]
    intensity: tuple[IntensityStats, ...]
    version: int = FINGERPRINT_VERSION

    def __post_init__(self) -> None:
        if not self.cases:
            raise DatasetError(f"{self.task_name}: fingerprint of a task with no training cases")
        if len(self.intensity) != len(self.modalities):
            raise DatasetError(
                f"{self.task_name}: {len(self.intensity)} intensity entries for "
                f"{len(self.modalities)} modalities"
            )

    @property
    def spacings(self) -> np.ndarray:
        """``(N, 3)`` voxel spacings of the cases."""
        return np.array([c.spacing for c in self.cases], dtype=np.float64)

    @property
    def shapes_after_crop(self) -> np.ndarray:
        """``(N, 3)`` shapes after the non-zero crop."""
        return np.array([c.shape_after_crop for c in self.cases], dtype=np.int64)

    @property
    def median_crop_fraction(self) -> float:
        """Median fraction of voxels kept by cropping (< 0.75: normalise inside the mask)."""
        return float(np.median([c.crop_fraction for c in self.cases]))

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "version": self.version,
            "task_name": self.task_name,
            "modalities": list(self.modalities),
            "labels": {str(k): v for k, v in self.labels.items()},
            "intensity": [asdict(s) for s in self.intensity],
            "cases": [
                {
                    "name": c.name,
                    "spacing": list(c.spacing),
                    "shape": list(c.shape),
                    "shape_after_crop": list(c.shape_after_crop),
                    "class_voxels": {str(k): v for k, v in c.class_voxels.items()},
                    "sources": c.sources,
                }
                for c in self.cases
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fingerprint:
        """Inverse of :meth:`to_json`; raises ``KeyError``/``TypeError``/``ValueError`` if bad."""
        if int(data["version"]) != FINGERPRINT_VERSION:
            raise ValueError(f"fingerprint version {data['version']} != {FINGERPRINT_VERSION}")
        cases = tuple(
            CaseFingerprint(
                name=str(c["name"]),
                spacing=_float3(c["spacing"]),
                shape=_int3(c["shape"]),
                shape_after_crop=_int3(c["shape_after_crop"]),
                class_voxels={int(k): int(v) for k, v in c["class_voxels"].items()},
                sources={str(k): [int(x) for x in v] for k, v in c.get("sources", {}).items()},
            )
            for c in data["cases"]
        )
        return cls(
            task_name=str(data["task_name"]),
            modalities=tuple(str(m) for m in data["modalities"]),
            labels={int(k): str(v) for k, v in data["labels"].items()},
            cases=cases,
            intensity=tuple(IntensityStats(**s) for s in data["intensity"]),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``fingerprint.json`` atomically."""
        atomic_write_json(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fingerprint:
        """Read a fingerprint file; raises :class:`DatasetError` if missing or malformed."""
        p = Path(path)
        try:
            return cls.from_json(json.loads(p.read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise DatasetError(f"{p}: fingerprint file not found") from exc
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DatasetError(f"{p}: not a valid fingerprint file ({exc})") from exc


def _float3(v: Sequence[Any]) -> tuple[float, float, float]:
    if len(v) != 3:
        raise ValueError(f"expected 3 values, got {list(v)}")
    return (float(v[0]), float(v[1]), float(v[2]))


def _int3(v: Sequence[Any]) -> tuple[int, int, int]:
    if len(v) != 3:
        raise ValueError(f"expected 3 values, got {list(v)}")
    return (int(v[0]), int(v[1]), int(v[2]))


def fingerprint_arrays(
    image: Image,
    label: Image | None,
    *,
    name: str,
    rng: np.random.Generator,
    samples: int = SAMPLES_PER_CASE,
) -> tuple[CaseFingerprint, list[np.ndarray]]:
    """Fingerprint one case held in memory.

    Args:
        image: ``(C, X, Y, Z)`` image.
        label: ``(1, X, Y, Z)`` label map, or ``None`` (then non-zero voxels count as foreground).
        name: the case name.
        rng: draws the foreground sample.
        samples: foreground voxels drawn per channel (with replacement).

    Returns:
        The case fingerprint and, per channel, the sampled foreground intensities.
    """
    reorient = reorientation_of(image)  # spacing and shapes in the canonical axis order
    geometry = reorient.geometry(image.geometry)
    array = reorient.apply(image.array)
    if label is not None:
        label = Image(reorient.apply(label.array), geometry, label.path)
    box = nonzero_bbox(array)
    img = crop(array, box)
    if label is not None:
        seg = crop(label.array[0], box)
        values, counts = np.unique(seg, return_counts=True)
        class_voxels = {int(v): int(c) for v, c in zip(values, counts, strict=True) if v > 0}
        fg = seg > 0
    else:
        class_voxels = {}
        fg = np.any(img != 0, axis=0)
    if not fg.any():
        fg = np.ones(img.shape[1:], dtype=bool)
    idx = np.flatnonzero(fg)
    pick = idx[rng.integers(0, idx.size, size=samples)] if samples > 0 else idx[:0]
    sampled = [np.asarray(img[c].ravel()[pick], dtype=np.float32) for c in range(img.shape[0])]
    fp = CaseFingerprint(
        name=name,
        spacing=geometry.spacing,
        shape=geometry.shape,
        shape_after_crop=bbox_shape(box),
        class_voxels=class_voxels,
    )
    return fp, sampled


def _fingerprint_one(
    args: tuple[Case, int, int, dict[int, str]],
) -> tuple[CaseFingerprint, list[np.ndarray]]:
    from decathlon.datalist import read_case

    case, index, channels, labels = args
    stamp = source_stamp(case.files)
    image, label = read_case(case, num_channels=channels, labels=labels)
    rng = np.random.default_rng([1234, index])
    fp, sampled = fingerprint_arrays(image, label, name=case.name, rng=rng)
    return replace(fp, sources=stamp), sampled


def fingerprint_task(task: Task, *, workers: int = 2, progress: bool = False) -> Fingerprint:
    """Read every training case of ``task`` and fingerprint the dataset.

    Args:
        task: a loaded task (:func:`decathlon.datalist.load_task`).
        workers: processes reading cases in parallel (1: in this process).
        progress: show a tqdm bar.

    Raises:
        DatasetError: the task has no training cases; ImageReadError: a file cannot be read.
    """
    if not task.training:
        raise DatasetError(f"{task.root}: no training cases to fingerprint")
    jobs = [(c, i, task.num_channels, task.labels) for i, c in enumerate(task.training)]
    bar = dict(total=len(jobs), desc="fingerprint", unit="case", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            results = list(tqdm(pool.map(_fingerprint_one, jobs), **bar))  # type: ignore[call-overload]
    else:
        results = [_fingerprint_one(j) for j in tqdm(jobs, **bar)]  # type: ignore[call-overload]
    channels = task.num_channels
    pooled = [np.concatenate([r[1][c] for r in results]) for c in range(channels)]
    return Fingerprint(
        task_name=task.name,
        modalities=tuple(task.modalities),
        labels=dict(task.labels),
        cases=tuple(r[0] for r in results),
        intensity=tuple(IntensityStats.of(v) for v in pooled),
    )
