"""Display windows: how intensities map to grey levels (CT window/level, percentile windows).

A window ``(width, level)`` shows intensities in ``level +- width / 2`` from black to white;
values below are black and values above are white (clipped). CT uses fixed windows in Hounsfield
units (:data:`WINDOW_PRESETS`, e.g. abdominal soft tissue W400/L40); MR has no absolute scale,
so its default window spans the 0.5-99.5 percentiles of the non-zero voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasmed.errors import ConfigError

__all__ = [
    "WINDOW_PRESETS",
    "WindowLevel",
    "WindowSpec",
    "apply_window",
    "auto_window",
    "resolve_window",
]


@dataclass(frozen=True)
class WindowLevel:
    """A display window: intensities in ``level +- width / 2`` map to black..white.

    Attributes:
        width: window width (> 0), in the image's units (HU for CT).
        level: window centre.
    """

    width: float
    level: float

    def __post_init__(self) -> None:
        if not float(self.width) > 0:
            raise ConfigError(f"window width must be > 0, got {self.width}")

    @property
    def low(self) -> float:
        """The intensity shown black (and everything below)."""
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        """The intensity shown white (and everything above)."""
        return self.level + self.width / 2


#: Usual CT windows (width, level) in HU.
WINDOW_PRESETS: dict[str, WindowLevel] = {
    "abdomen": WindowLevel(400, 40),  # abdominal soft tissue
    "liver": WindowLevel(150, 30),
    "mediastinum": WindowLevel(350, 50),
    "lung": WindowLevel(1500, -600),
    "bone": WindowLevel(1800, 400),
    "brain": WindowLevel(80, 40),
}

WindowSpec = WindowLevel | str | tuple[float, float] | None


def apply_window(array: np.ndarray, window: WindowLevel) -> np.ndarray:
    """Map intensities to [0, 1] through ``window``: clipped below ``low`` and above ``high``."""
    a = np.asarray(array, dtype=np.float64)
    return np.clip((a - window.low) / window.width, 0.0, 1.0)


def auto_window(array: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> WindowLevel:
    """A window spanning the given percentiles of the non-zero voxels (all voxels if none)."""
    a = np.asarray(array, dtype=np.float64)
    values = a[a != 0] if np.any(a != 0) else a.ravel()
    low, high = (float(v) for v in np.percentile(values, percentiles))
    width = high - low if high > low else 1.0
    return WindowLevel(width, low + width / 2)


def resolve_window(window: WindowSpec, array: np.ndarray, *, modality: str = "") -> WindowLevel:
    """The window to show ``array`` with.

    Args:
        window: a :class:`WindowLevel`; a preset name of :data:`WINDOW_PRESETS`; ``"auto"``
            (percentiles); a ``(width, level)`` pair; or ``None``: the abdomen preset for CT
            (``modality == "CT"``), percentiles otherwise.
        array: the intensities (for the percentiles).
        modality: the channel's modality name.

    Raises:
        ConfigError: an unknown preset name.
    """
    if isinstance(window, WindowLevel):
        return window
    if window is None:
        return WINDOW_PRESETS["abdomen"] if modality.upper() == "CT" else auto_window(array)
    if isinstance(window, str):
        if window == "auto":
            return auto_window(array)
        if window not in WINDOW_PRESETS:
            raise ConfigError(
                f"unknown window preset {window!r}; known: auto, {', '.join(WINDOW_PRESETS)}"
            )
        return WINDOW_PRESETS[window]
    width, level = window
    return WindowLevel(float(width), float(level))
