"""Display windows: clipping, presets, percentile windows."""

from __future__ import annotations

import numpy as np
import pytest

from nasmed.errors import ConfigError
from nasmed.viz.window import WINDOW_PRESETS, WindowLevel, apply_window, auto_window, resolve_window


def test_abdomen_window_clips_at_level_plus_minus_half_width() -> None:
    w = WINDOW_PRESETS["abdomen"]
    assert (w.width, w.level, w.low, w.high) == (400, 40, -160, 240)
    hu = np.array([-1000.0, -160.0, -60.0, 40.0, 140.0, 240.0, 1000.0])
    np.testing.assert_allclose(apply_window(hu, w), [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])


def test_window_width_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="width must be > 0"):
        WindowLevel(0, 40)


def test_auto_window_spans_percentiles_of_nonzero_voxels() -> None:
    a = np.zeros((10, 10, 10))
    a[:5] = np.linspace(1.0, 101.0, 500).reshape(5, 10, 10)
    w = auto_window(a, (0.0, 100.0))
    assert w.low == pytest.approx(1.0) and w.high == pytest.approx(101.0)


def test_resolve_window() -> None:
    a = np.arange(1.0, 11.0)
    assert resolve_window(None, a, modality="CT") == WINDOW_PRESETS["abdomen"]
    assert resolve_window("lung", a) == WindowLevel(1500, -600)
    assert resolve_window((100, 50), a) == WindowLevel(100, 50)
    mr = resolve_window(None, a, modality="T1w")
    assert mr.low == pytest.approx(np.percentile(a, 0.5))
    with pytest.raises(ConfigError, match="unknown window preset 'nope'"):
        resolve_window("nope", a)
