"""``nasmed compare``'s figure: validation Dice per network with its spread over seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nasmed.viz.figure import new_figure

__all__ = ["KIND_COLORS", "plot_compare"]

KIND_COLORS = {"found": "#e6194b", "random": "#8c8c8c", "baseline": "#4363d8"}


def plot_compare(rows: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Figure:
    """One line per network, sorted by mean Dice: each seed's Dice as a dot, the mean as a bar
    tick, the seeds' range as a line; found, random and baseline networks in their own colours,
    and the random networks' median as a dashed line.

    Args:
        rows: ``compare.json``'s ``networks`` (``name``, ``kind``, ``dice_mean``,
            ``dice_seed<k>``).
        title: the figure's title.
    """
    ranked = sorted(
        (r for r in rows if r.get("dice_mean") is not None), key=lambda r: float(r["dice_mean"])
    )
    fig, axes = new_figure(1, 1, size=(6.5, 0.9 + 0.28 * max(len(ranked), 3)))
    ax = axes[0, 0]
    for y, row in enumerate(ranked):
        color = KIND_COLORS.get(str(row["kind"]), "black")
        seeds = [float(v) for k, v in row.items() if k.startswith("dice_seed") and v is not None]
        if seeds:
            ax.plot([min(seeds), max(seeds)], [y, y], color=color, lw=1.5, alpha=0.6)
            ax.scatter(seeds, [y] * len(seeds), s=14, color=color, zorder=3)
        ax.scatter([float(row["dice_mean"])], [y], marker="|", s=160, color=color, zorder=4)
    randoms = sorted(float(r["dice_mean"]) for r in ranked if r["kind"] == "random")
    if randoms:
        mid = len(randoms) // 2
        median = randoms[mid] if len(randoms) % 2 else 0.5 * (randoms[mid - 1] + randoms[mid])
        ax.axvline(median, color=KIND_COLORS["random"], ls="--", lw=1)
    ax.set_yticks(range(len(ranked)), [str(r["name"]) for r in ranked], fontsize=7)
    ax.set_xlabel("validation Dice (dots: seeds; tick: mean)")
    handles = [Line2D([], [], color=c, marker="o", ls="", label=k) for k, c in KIND_COLORS.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
