"""Random patches from ``(image, seg)`` arrays, with foreground oversampling and padding.

A share of the patches (``foreground_fraction``, one third by default, as in nnU-Net) is centred
on a voxel of a foreground class present in the case, the class drawn uniformly among those
present (class-balanced) or in proportion to their volume; the other patches lie anywhere.
Patches that reach past the border are padded (image 0 or the channel minimum, label 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from decathlon.errors import DatasetError

__all__ = ["PadMode", "PatchSampler", "is_forced_foreground"]

PadMode = Literal["zero", "min"]


def is_forced_foreground(index: int, fraction: float) -> bool:
    """Whether sample ``index`` must hold foreground, so that exactly ``fraction`` of every run of
    ``1 / fraction`` consecutive samples does (1 in 3 for the default one third)."""
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    return math.floor((index + 1) * fraction + 1e-9) > math.floor(index * fraction + 1e-9)


class PatchSampler:
    """Draw patches from in-memory or memory-mapped cases.

    Args:
        cases: ``(image (C, x, y, z), seg (1, x, y, z) or None)`` per case; memory maps are fine.
        patch_size: the patch, ``(px, py, pz)``.
        foreground_fraction: probability that :meth:`sample` centres a patch on foreground
            (when not told explicitly).
        class_balanced: draw the foreground class uniformly among the classes present
            (otherwise a foreground voxel uniformly, favouring large classes).
        class_locations: per case, ``{class: (N, 3) voxels}``; computed from ``seg`` if omitted.
        pad: pad images with ``"zero"`` or each channel's ``"min"``.
    """

    def __init__(
        self,
        cases: Sequence[tuple[np.ndarray, np.ndarray | None]],
        patch_size: Sequence[int],
        *,
        foreground_fraction: float = 1 / 3,
        class_balanced: bool = True,
        class_locations: Sequence[dict[int, np.ndarray]] | None = None,
        pad: PadMode = "zero",
    ) -> None:
        if not cases:
            raise DatasetError("patch sampler: no cases to sample from")
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ValueError(f"patch_size must be 3 positive ints, got {tuple(patch_size)}")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        if class_locations is not None and len(class_locations) != len(cases):
            raise ValueError("class_locations needs one entry per case")
        self.cases = list(cases)
        self.patch = np.asarray([int(p) for p in patch_size], dtype=np.int64)
        self.foreground_fraction = float(foreground_fraction)
        self.class_balanced = class_balanced
        self.pad = pad
        self._locations: list[dict[int, np.ndarray] | None] = (
            list(class_locations) if class_locations is not None else [None] * len(self.cases)
        )
        self._mins: list[np.ndarray | None] = [None] * len(self.cases)

    def locations(self, index: int) -> dict[int, np.ndarray]:
        """Foreground voxels of case ``index`` per class (computed once if not given)."""
        loc = self._locations[index]
        if loc is None:
            seg = self.cases[index][1]
            loc = {}
            if seg is not None:
                arr = np.asarray(seg[0])
                for value in np.unique(arr):
                    if value > 0:
                        loc[int(value)] = np.argwhere(arr == value).astype(np.int32)
            self._locations[index] = loc
        return loc

    def draw(
        self, rng: np.random.Generator, *, force_foreground: bool | None = None
    ) -> tuple[int, np.ndarray]:
        """Choose a case and the patch's lower corner (may be negative: padding).

        Args:
            rng: the random source.
            force_foreground: centre on foreground (``None``: with ``foreground_fraction``).
        """
        index = int(rng.integers(len(self.cases)))
        shape = np.asarray(self.cases[index][0].shape[1:], dtype=np.int64)
        if force_foreground is None:
            force_foreground = bool(rng.random() < self.foreground_fraction)
        # the lower corner ranges so the patch stays inside the image, or (when the image is
        # smaller than the patch) so the image stays inside the patch
        low = np.minimum(0, shape - self.patch)
        high = np.maximum(0, shape - self.patch)
        centre = self._foreground_voxel(index, rng) if force_foreground else None
        if centre is None:
            corner = np.array([rng.integers(lo, hi + 1) for lo, hi in zip(low, high, strict=True)])
        else:
            corner = np.clip(centre - self.patch // 2, low, high)
        return index, corner.astype(np.int64)

    def _foreground_voxel(self, index: int, rng: np.random.Generator) -> np.ndarray | None:
        loc = {k: v for k, v in self.locations(index).items() if len(v)}
        if not loc:
            return None
        if self.class_balanced:
            cls = sorted(loc)[int(rng.integers(len(loc)))]
            voxels = loc[cls]
        else:
            voxels = np.concatenate([loc[k] for k in sorted(loc)])
        return np.asarray(voxels[int(rng.integers(len(voxels)))], dtype=np.int64)

    def extract(
        self,
        index: int,
        corner: np.ndarray,
        out: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The patch of case ``index`` at ``corner``, padded where it leaves the image.

        Args:
            index: the case.
            corner: the patch's lower corner (from :meth:`draw`).
            out: ``(image (C, *patch), label (1, *patch))`` arrays to fill (any float / integer
                dtypes); new float32 / int16 arrays if omitted.

        Returns:
            The image and label patches (``out`` when given).
        """
        image, seg = self.cases[index]
        shape = np.asarray(image.shape[1:], dtype=np.int64)
        lo = np.maximum(corner, 0)
        hi = np.minimum(corner + self.patch, shape)
        src = (slice(None), *(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)))
        dst = (
            slice(None),
            *(slice(int(a - c), int(b - c)) for a, b, c in zip(lo, hi, corner, strict=True)),
        )
        if out is None:
            img = np.empty((image.shape[0], *self.patch), dtype=np.float32)
            lab = np.empty((1, *self.patch), dtype=np.int16)
        else:
            img, lab = out
        inside = bool(np.all(lo == corner) and np.all(hi == corner + self.patch))
        if not inside:
            img[...] = self._pad_values(index).reshape(-1, 1, 1, 1)
        img[dst] = image[src]
        if seg is None or not inside:
            lab[...] = 0
        if seg is not None:
            lab[dst] = seg[src]
        return img, lab

    def _pad_values(self, index: int) -> np.ndarray:
        image = self.cases[index][0]
        if self.pad == "zero":
            return np.zeros(image.shape[0], dtype=np.float32)
        mins = self._mins[index]
        if mins is None:
            mins = np.array([float(np.min(image[c])) for c in range(image.shape[0])], np.float32)
            self._mins[index] = mins
        return mins

    def sample(
        self, rng: np.random.Generator, *, force_foreground: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A random patch: ``(image (C, *patch) float32, seg (1, *patch) int16)``."""
        index, corner = self.draw(rng, force_foreground=force_foreground)
        return self.extract(index, corner)
