"""Bring images to one canonical voxel order (RAS) before preprocessing, and results back.

The same image stored flipped or with permuted axes (same world positions, another voxel order)
must give the same segmentation. nnU-Net and MONAI users expect the network to see one
orientation (MONAI's ``Orientation(axcodes="RAS")``, nibabel's ``as_closest_canonical``), so
every case is reordered with nibabel's orientation tools before cropping: voxel axis ``i``
increases towards the world axis closest to R, A, S in turn. Only the voxel order changes
(flips and axis permutations, no interpolation); the reordered affine describes exactly the same
world positions. :meth:`Reorientation.undo` puts a result back into the input's voxel order.

An oblique grid is reordered to its closest canonical axes and stays oblique.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from nibabel import orientations as ornt

from decathlon.errors import DatasetError
from decathlon.io import Geometry, Image

__all__ = ["CANONICAL", "Reorientation", "reorientation_of"]

CANONICAL = "RAS"
"""The voxel order the network sees (nibabel's canonical, MONAI's ``axcodes="RAS"``)."""


@dataclass(frozen=True)
class Reorientation:
    """The voxel reordering from an input grid to the canonical one.

    Args:
        transform: nibabel orientation transform ``(3, 2)``: row ``i`` says which canonical
            axis input axis ``i`` becomes and whether it is flipped (``-1``).
        source: the input's axis codes (``"LPS"``, ``"ASR"``, ...).
        shape: the input's spatial shape.
    """

    transform: tuple[tuple[int, int], ...]
    source: str
    shape: tuple[int, int, int]

    @classmethod
    def of(cls, geometry: Geometry) -> Reorientation:
        """The reordering that brings ``geometry``'s voxels to :data:`CANONICAL` order.

        Raises:
            ValueError: the affine is singular (no orientation can be read from it).
        """
        if abs(float(np.linalg.det(geometry.affine[:3, :3]))) < 1e-12:
            raise ValueError("singular affine: the voxel axes do not span 3D space")
        src = ornt.io_orientation(geometry.affine)
        tr = ornt.ornt_transform(src, ornt.axcodes2ornt(CANONICAL))
        return cls(
            tuple((int(a), int(f)) for a, f in tr),
            "".join(str(c) for c in ornt.ornt2axcodes(src)),
            geometry.shape,
        )

    @property
    def is_identity(self) -> bool:
        """True when the input already is in canonical order."""
        return self.transform == ((0, 1), (1, 1), (2, 1))

    @property
    def _array(self) -> np.ndarray:
        return np.asarray(self.transform, dtype=np.float64)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        """The spatial shape after reordering."""
        out = [0, 0, 0]
        for i, (axis, _) in enumerate(self.transform):
            out[axis] = self.shape[i]
        return (out[0], out[1], out[2])

    def geometry(self, geometry: Geometry) -> Geometry:
        """The canonical grid: same world positions, reordered voxels."""
        affine = geometry.affine @ ornt.inv_ornt_aff(self._array, self.shape)
        return Geometry(affine, self.canonical_shape)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """``(C, X, Y, Z)`` in input order -> canonical order (a contiguous copy)."""
        if self.is_identity:
            return array
        moved = np.moveaxis(np.asarray(array), 0, -1)
        return np.ascontiguousarray(np.moveaxis(ornt.apply_orientation(moved, self._array), -1, 0))

    def undo(self, array: np.ndarray) -> np.ndarray:
        """``(C, x, y, z)`` in canonical order -> the input's voxel order (a contiguous copy)."""
        if self.is_identity:
            return array
        back = ornt.ornt_transform(ornt.axcodes2ornt(CANONICAL), ornt.axcodes2ornt(self.source))
        moved = np.moveaxis(np.asarray(array), 0, -1)
        return np.ascontiguousarray(np.moveaxis(ornt.apply_orientation(moved, back), -1, 0))

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (stored in a case's properties)."""
        return {
            "canonical": CANONICAL,
            "source": self.source,
            "transform": [list(r) for r in self.transform],
            "shape": list(self.shape),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reorientation:
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: made for another canonical orientation.
        """
        if data.get("canonical") != CANONICAL:
            raise ValueError(f"reoriented to {data.get('canonical')!r}, not {CANONICAL!r}")
        s = [int(v) for v in data["shape"]]
        return cls(
            tuple((int(a), int(f)) for a, f in data["transform"]),
            str(data["source"]),
            (s[0], s[1], s[2]),
        )


def reorientation_of(image: Image | Geometry, path: object = None) -> Reorientation:
    """The reordering of ``image`` (or a grid read from ``path``) to canonical order.

    Raises:
        DatasetError: the affine is singular or not finite (names the file).
    """
    geometry = image.geometry if isinstance(image, Image) else image
    where = image.path if isinstance(image, Image) and path is None else path
    if not np.all(np.isfinite(geometry.affine)):
        raise DatasetError(f"{where or 'image'}: the affine holds NaN or infinite values")
    try:
        return Reorientation.of(geometry)
    except ValueError as exc:
        raise DatasetError(f"{where or 'image'}: {exc}; fix the file's header") from None
