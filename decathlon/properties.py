"""A preprocessed case's properties: what maps its predictions back onto the source grid.

:class:`CaseProperties` is the typed record :func:`decathlon.caseprep.preprocess_case` returns
and the cache stores (``WORK_DIR/cache/<case>.json``, next to the cache's own ``name``,
``sources`` and ``arrays`` entries). Its JSON form is the one written before the record
existed, field for field, so caches made earlier load unchanged: the source geometry, the
reorientation to RAS, the crop box and the shapes in canonical order, the spacings, the axis
resampled on its own, the label interpolation, the channel count, the plan's preprocessing
hash and the voxels per foreground class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from decathlon.crop import Box
from decathlon.errors import DatasetError
from decathlon.io import Geometry
from decathlon.orientation import Reorientation

__all__ = ["CaseProperties"]

Shape3 = tuple[int, int, int]


def _int3(values: Any) -> Shape3:
    v = [int(x) for x in values]
    if len(v) != 3:
        raise ValueError(f"expected 3 values, got {len(v)}")
    return (v[0], v[1], v[2])


def _float3(values: Any) -> tuple[float, float, float]:
    v = [float(x) for x in values]
    if len(v) != 3:
        raise ValueError(f"expected 3 values, got {len(v)}")
    return (v[0], v[1], v[2])


def _box(values: Any) -> Box:
    rows = [(int(lo), int(hi)) for lo, hi in values]
    if len(rows) != 3:
        raise ValueError(f"crop box needs 3 (start, stop) pairs, got {len(rows)}")
    return (rows[0], rows[1], rows[2])


@dataclass(frozen=True, eq=False)
class CaseProperties:
    """How a case was preprocessed (see the module docstring).

    Attributes:
        geometry: the source image's grid (affine and shape, voxel order as stored).
        orientation: the voxel reordering to the canonical (RAS) order.
        crop_box: the non-zero box ``((x0, x1), (y0, y1), (z0, z1))`` on the canonical grid.
        shape_after_crop: the box's shape.
        shape_after_resampling: the preprocessed array's spatial shape.
        original_spacing: the canonical grid's spacing.
        target_spacing: the plan's spacing.
        separate_axis: the axis resampled on its own (nearest), or ``None``.
        label_mode: how labels are interpolated (``"linear"`` per class or ``"nearest"``).
        channels: image channels.
        plan_hash: :meth:`decathlon.plan.Plan.preprocessing_hash` of the plan used.
        class_voxels: voxels of each foreground class after resampling (empty without label).
    """

    geometry: Geometry
    orientation: Reorientation
    crop_box: Box
    shape_after_crop: Shape3
    shape_after_resampling: Shape3
    original_spacing: tuple[float, float, float]
    target_spacing: tuple[float, float, float]
    separate_axis: int | None = None
    label_mode: str = "linear"
    channels: int = 1
    plan_hash: str = ""
    class_voxels: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (the cache's ``<case>.json`` fields)."""
        return {
            "geometry": self.geometry.to_json(),
            "orientation": self.orientation.to_json(),
            "crop_box": [list(b) for b in self.crop_box],
            "shape_after_crop": list(self.shape_after_crop),
            "shape_after_resampling": list(self.shape_after_resampling),
            "original_spacing": list(self.original_spacing),
            "target_spacing": list(self.target_spacing),
            "separate_axis": self.separate_axis,
            "label_mode": self.label_mode,
            "channels": self.channels,
            "plan_hash": self.plan_hash,
            "class_voxels": {str(k): int(v) for k, v in sorted(self.class_voxels.items())},
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, source: str = "case properties"
    ) -> CaseProperties:
        """Inverse of :meth:`to_json`; other keys (the cache's ``name``, ``sources``,
        ``arrays``) are ignored, and the fields older caches lack take their defaults.

        Raises:
            DatasetError: a field is missing or malformed (the message names ``source``).
        """
        try:
            if not isinstance(data, Mapping):
                raise TypeError("not a JSON object")
            axis = data.get("separate_axis")
            return cls(
                geometry=Geometry.from_json(dict(data["geometry"])),
                orientation=Reorientation.from_json(dict(data["orientation"])),
                crop_box=_box(data["crop_box"]),
                shape_after_crop=_int3(data["shape_after_crop"]),
                shape_after_resampling=_int3(data["shape_after_resampling"]),
                original_spacing=_float3(data["original_spacing"]),
                target_spacing=_float3(data["target_spacing"]),
                separate_axis=None if axis is None else int(axis),
                label_mode=str(data.get("label_mode", "linear")),
                channels=int(data.get("channels", 1)),
                plan_hash=str(data.get("plan_hash", "")),
                class_voxels={int(k): int(v) for k, v in (data.get("class_voxels") or {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            raise DatasetError(f"{source}: not valid case properties ({what})") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CaseProperties):
            return NotImplemented
        return self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(repr(self.to_json()))
