"""Sliders in Jupyter when ipywidgets is installed (``pip install -e .[notebooks]``), static
figures when it is not: the same call works in both, so notebooks run headless and in CI.

The interactive views redraw a :mod:`nasmed.viz` figure on every change and show it as a PNG
image, so they do not depend on the notebook's matplotlib backend.
"""

from __future__ import annotations

import importlib.util
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from decathlon.io import Image
from nasmed.viz.search import AlphaSnapshot, plot_alpha_heatmaps
from nasmed.viz.volume import View, canonical, default_index, plot_orthogonal
from nasmed.viz.window import WINDOW_PRESETS, WindowSpec

__all__ = ["alpha_viewer", "slice_viewer", "widgets_available"]

log = logging.getLogger(__name__)


def widgets_available() -> bool:
    """True when ipywidgets (and IPython) can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in ("ipywidgets", "IPython"))


def _show(fig: Figure) -> None:
    """Display ``fig`` as a PNG in the current output (a notebook cell or an Output widget)."""
    from IPython.display import Image as PngImage
    from IPython.display import display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    display(PngImage(data=buf.getvalue()))


def _interactive(draw: Callable[..., Figure], controls: Mapping[str, Any]) -> Any:
    import ipywidgets

    def update(**kwargs: Any) -> None:
        _show(draw(**kwargs))

    return ipywidgets.interactive(update, **controls)


def slice_viewer(
    image: Image | np.ndarray,
    label: Image | np.ndarray | None = None,
    *,
    window: WindowSpec = None,
    modality: str = "",
    label_names: Mapping[int, str] | None = None,
    static: bool | None = None,
) -> Any:
    """Orthogonal slices with sliders for the cut point, the window and the overlay opacity.

    Args:
        image: the volume (see :func:`~nasmed.viz.volume.plot_orthogonal`).
        label: its label map, or ``None``.
        window: the initial window (a preset name, ``"auto"``, ``(width, level)``...).
        modality: the channel's modality (``"CT"`` starts with the abdomen window).
        label_names: names for the legend.
        static: force the static figure (``True``) or the widget (``False``); default: the
            widget when ipywidgets is installed.

    Returns:
        An ``ipywidgets`` widget, or the static :class:`~matplotlib.figure.Figure` of
        :func:`~nasmed.viz.volume.plot_orthogonal` when ipywidgets is not installed.
    """
    if static is None:
        static = not widgets_available()
    if static:
        log.info("ipywidgets is not installed: showing a static figure")
        return plot_orthogonal(
            image, label, window=window, modality=modality, label_names=label_names
        )
    import ipywidgets

    shape = canonical(image).shape[1:]
    lab = canonical(label)[0] if label is not None else None
    start = default_index(lab, shape)
    presets = ["default", "auto", *WINDOW_PRESETS]
    first = window if isinstance(window, str) and window in presets else "default"
    controls = {
        view.value: ipywidgets.IntSlider(
            value=start[view.axis], min=0, max=shape[view.axis] - 1, description=view.value
        )
        for view in View
    }
    controls["window"] = ipywidgets.Dropdown(options=presets, value=first, description="window")
    controls["alpha"] = ipywidgets.FloatSlider(
        value=0.4, min=0.0, max=1.0, step=0.05, description="overlay"
    )

    def draw(sagittal: int, coronal: int, axial: int, window: str, alpha: float) -> Figure:
        return plot_orthogonal(
            image,
            label,
            index=(sagittal, coronal, axial),
            window=None if window == "default" else window,
            modality=modality,
            label_names=label_names,
            alpha=alpha,
        )

    return _interactive(draw, controls)


def alpha_viewer(
    snapshots: Sequence[AlphaSnapshot], *, static: bool | None = None, **kwargs: Any
) -> Any:
    """The architecture-logit heatmaps with an epoch slider.

    Args:
        snapshots: from :func:`~nasmed.viz.search.load_alpha_snapshots`.
        static: as in :func:`slice_viewer`.
        kwargs: passed to :func:`~nasmed.viz.search.plot_alpha_heatmaps`.

    Returns:
        A widget, or without ipywidgets the static figure of evenly spread epochs.
    """
    if static is None:
        static = not widgets_available()
    if static:
        return plot_alpha_heatmaps(snapshots, **kwargs)
    import ipywidgets

    slider = ipywidgets.IntSlider(
        value=len(snapshots) - 1, min=0, max=len(snapshots) - 1, description="snapshot"
    )

    def draw(snapshot: int) -> Figure:
        return plot_alpha_heatmaps([snapshots[snapshot]], **kwargs)

    return _interactive(draw, {"snapshot": slider})
