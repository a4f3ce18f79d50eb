"""Curves from ``history.csv``: learning curves of one or several runs, any columns per panel.

Both the trainer and the search write ``RUN_DIR/history.csv`` (one row per epoch; read with
:func:`nasmed.train.history.read_history`). Empty cells (a validation skipped that epoch) are
left out of the lines, so sparse validation still draws connected points.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nasmed.errors import RunDirError
from nasmed.train.history import read_history
from nasmed.viz.figure import new_figure

__all__ = ["HistoryLike", "history_rows", "plot_columns", "plot_learning_curves"]

#: A ``history.csv`` path, a run folder holding one, or its rows.
HistoryLike = str | os.PathLike[str] | Sequence[Mapping[str, Any]]


def history_rows(history: HistoryLike) -> list[dict[str, Any]]:
    """The rows of ``history`` (a path to ``history.csv``, its run folder, or rows already).

    Raises:
        RunDirError: the file does not exist or has no rows.
    """
    if isinstance(history, (str, os.PathLike)):
        path = Path(history)
        if path.is_dir():
            path = path / "history.csv"
        rows = read_history(path)
        if not rows:
            raise RunDirError(f"{path}: no history rows (missing or empty history.csv)")
        return rows
    return [dict(r) for r in history]


def _series(rows: Sequence[Mapping[str, Any]], column: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(rows):
        value = row.get(column)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            xs.append(float(row.get("epoch", i)))
            ys.append(float(value))
    return xs, ys


def _line(ax: Axes, xs: list[float], ys: list[float], label: str) -> None:
    ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, lw=1.2, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs


def plot_columns(
    rows: Sequence[Mapping[str, Any]],
    panels: Sequence[tuple[str, Sequence[str]]],
    *,
    title: str | None = None,
) -> Figure:
    """One panel per ``(y label, columns)`` whose columns have values; x is the epoch.

    Raises:
        RunDirError: none of the columns has a value.
    """
    present = [(name, [c for c in cols if _series(rows, c)[0]]) for name, cols in panels]
    present = [(name, cols) for name, cols in present if cols]
    if not present:
        wanted = sorted({c for _, cols in panels for c in cols})
        raise RunDirError(f"the history has none of the columns {wanted}")
    ncols = min(3, len(present))
    nrows = -(-len(present) // ncols)
    fig, axes = new_figure(nrows, ncols, size=(3.4 * ncols, 2.6 * nrows))
    flat = list(axes.ravel())
    for ax, (name, cols) in zip(flat, present):
        for col in cols:
            _line(ax, *_series(rows, col), col)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
        if len(cols) > 1:
            ax.legend(fontsize=7)
    for ax in flat[len(present) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_learning_curves(
    runs: Mapping[str, HistoryLike] | HistoryLike,
    *,
    loss: str = "loss",
    metric: str = "val_dice",
    title: str | None = None,
) -> Figure:
    """Training loss and a validation metric over the epochs, one line per run.

    Args:
        runs: ``{name: history}`` to compare runs (e.g. transfer vs from scratch), or one
            history (a ``history.csv`` path, run folder or rows).
        loss: the loss column.
        metric: the metric column (points only where it was measured).
        title: the figure's title.

    Returns:
        A figure with two axes: the loss and the metric.
    """
    if isinstance(runs, Mapping):
        named = {str(k): history_rows(v) for k, v in runs.items()}
    else:
        named = {"run": history_rows(runs)}
    fig, axes = new_figure(1, 2, size=(8.0, 3.2))
    for ax, column in zip(axes[0], (loss, metric)):
        for name, rows in named.items():
            xs, ys = _series(rows, column)
            if xs:
                _line(ax, xs, ys, name)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(column, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.lines and len(named) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
