"""Settings of nnU-Net's training augmentation: :class:`AugmentConfig` (plain data, no torch).

Kept apart from :mod:`nasmed.train.augment` (the MONAI transforms that apply it) so that the
command line and :class:`~nasmed.train.config.TrainConfig` build and validate it without
importing torch (the CPU allocator policy is set before torch loads; see
:mod:`nasmed.allocator`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from nasmed.errors import ConfigError

__all__ = ["AUGMENT_PARTS", "AugmentConfig"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities of each part of the augmentation (0: off); nnU-Net v2's by default.

    Attributes:
        enabled: master switch (``False``: no augmentation at all).
        rotation: probability of a rotation (each axis in +-``rotation_degrees``).
        rotation_degrees: the rotation range.
        scaling: probability of a scaling (one factor in ``scale_range``).
        scale_range: the scale factors.
        elastic: probability of an elastic deformation (MONAI ``Rand3DElastic``).
        noise: probability of Gaussian noise.
        blur: probability of Gaussian blur.
        brightness: probability of multiplicative brightness.
        contrast: probability of a contrast change.
        low_resolution: probability of the low-resolution simulation.
        inverted_gamma: probability of gamma on the inverted image.
        gamma: probability of gamma.
        mirror: probability of a flip, per axis.
    """

    enabled: bool = True
    rotation: float = 0.2
    rotation_degrees: float = 30.0
    scaling: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    elastic: float = 0.0
    noise: float = 0.1
    blur: float = 0.2
    brightness: float = 0.15
    contrast: float = 0.15
    low_resolution: float = 0.25
    inverted_gamma: float = 0.1
    gamma: float = 0.3
    mirror: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_range", tuple(float(s) for s in self.scale_range))
        for name in AUGMENT_PARTS:
            p = getattr(self, name)
            if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
                raise ConfigError(f"augmentation {name}: probability must be in [0, 1], got {p}")
        lo, hi = self.scale_range
        if not (len(self.scale_range) == 2 and 0 < lo <= hi):
            raise ConfigError(f"augmentation scale range must be 0 < low <= high, got {lo}, {hi}")
        if not 0 <= self.rotation_degrees <= 180:
            raise ConfigError(
                f"augmentation rotation must be 0-180 degrees, got {self.rotation_degrees}"
            )

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation."""
        return cls(enabled=False)

    def without(self, *parts: str) -> AugmentConfig:
        """This configuration with ``parts`` switched off (names of :data:`AUGMENT_PARTS`).

        Raises:
            ConfigError: an unknown part.
        """
        unknown = sorted(set(parts) - set(AUGMENT_PARTS))
        if unknown:
            raise ConfigError(
                f"unknown augmentation part(s) {', '.join(unknown)}; use {', '.join(AUGMENT_PARTS)}"
            )
        return AugmentConfig(**{**self.to_json(), **dict.fromkeys(parts, 0.0)})

    @property
    def active(self) -> bool:
        """Whether any part can fire."""
        return self.enabled and any(getattr(self, n) > 0 for n in AUGMENT_PARTS)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (recorded in ``run.json`` and ``model.json``)."""
        data = asdict(self)
        data["scale_range"] = list(self.scale_range)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AugmentConfig:
        """Inverse of :meth:`to_json` (unknown keys are a :class:`ConfigError`)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"augmentation: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


#: The parts with a probability, in the order they are applied.
AUGMENT_PARTS = (
    "rotation",
    "scaling",
    "elastic",
    "noise",
    "blur",
    "brightness",
    "contrast",
    "low_resolution",
    "inverted_gamma",
    "gamma",
    "mirror",
)
