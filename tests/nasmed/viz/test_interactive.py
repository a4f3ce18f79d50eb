"""Sliders with ipywidgets, static figures without."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from nasmed.viz import interactive


def _volume() -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).normal(size=(12, 10, 8))
    label = np.zeros((12, 10, 8), dtype=np.uint8)
    label[3:6, 3:6, 2:4] = 1
    return image, label


def test_static_without_ipywidgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interactive, "widgets_available", lambda: False)
    fig = interactive.slice_viewer(*_volume())
    assert isinstance(fig, Figure) and len(fig.get_axes()) == 3


def test_widget_with_ipywidgets() -> None:
    pytest.importorskip("ipywidgets")
    widget = interactive.slice_viewer(*_volume(), static=False)
    descriptions = [getattr(c, "description", None) for c in widget.children]
    assert descriptions[:5] == ["sagittal", "coronal", "axial", "window", "overlay"]
    sliders = {c.description: c for c in widget.children[:3]}
    assert (sliders["sagittal"].value, sliders["sagittal"].max) == (4, 11)  # foreground centre
    sliders["axial"].value = 7  # redraws without error
