"""Figures without pyplot: a new :class:`~matplotlib.figure.Figure`, and saving one as PNG.

Every plot of :mod:`nasmed.viz` returns a plain ``Figure`` built here, never one registered with
``pyplot``: no global state, no backend switch, nothing left open, and it works the same in a
script (Agg), under a test, and in Jupyter (``%matplotlib inline`` shows a returned figure).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from decathlon.fsutil import atomic_open
from decathlon.outputs import check_files, record_files
from nasmed.errors import ConfigError

__all__ = ["hide_ticks", "label_cmap", "label_color", "new_figure", "save_png"]

# Label colours: value 1 is the first, and so on (value 0, background, is never drawn).
_LABEL_COLORS = (
    "#e6194b",  # red
    "#3cb44b",  # green
    "#4363d8",  # blue
    "#ffe119",  # yellow
    "#f58231",  # orange
    "#911eb4",  # purple
    "#42d4f4",  # cyan
    "#f032e6",  # magenta
)


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    size: tuple[float, float] | None = None,
    squeeze: bool = False,
    **subplot_kw: object,
) -> tuple[Figure, np.ndarray]:
    """A figure and its ``(nrows, ncols)`` array of axes (constrained layout).

    Args:
        nrows: rows of axes.
        ncols: columns of axes.
        size: figure size in inches; default 3 x 3 per axes.
        squeeze: as in :func:`matplotlib.pyplot.subplots`.
        subplot_kw: passed to each axes.
    """
    fig = Figure(figsize=size or (3.0 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, subplot_kw=subplot_kw or None)
    return fig, np.asarray(axes, dtype=object)


def save_png(
    fig: Figure, path: str | os.PathLike[str], *, dpi: int = 100, verb: str = "figure"
) -> Path:
    """Write ``fig`` as a PNG file atomically (a reader never sees half a file).

    Args:
        fig: the figure.
        path: the PNG file.
        dpi: resolution.
        verb: the writer recorded for the file (:mod:`decathlon.outputs`): an existing file is
            replaced only when this verb wrote it.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``path`` is a folder, or cannot be written. OutputError: ``path`` exists
        and ``verb`` did not write it.
    """
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give a PNG file name")
    check_files([out], verb)
    try:
        record_files([out], verb)
        with atomic_open(out, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the PNG ({exc.strerror or exc})") from None
    return out


def label_color(value: int) -> str:
    """The colour of label ``value`` (>= 1) in every overlay."""
    return _LABEL_COLORS[(int(value) - 1) % len(_LABEL_COLORS)]


def label_cmap(max_label: int) -> ListedColormap:
    """A colormap for label values ``0..max_label`` (0 is transparent)."""
    colors = ["#00000000"] + [label_color(v) for v in range(1, max(1, max_label) + 1)]
    return ListedColormap(colors, name="nasmed_labels")


def hide_ticks(ax: Axes) -> None:
    """Remove ticks and tick labels from ``ax`` (images)."""
    ax.set_xticks([])
    ax.set_yticks([])
