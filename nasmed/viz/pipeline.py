"""A GPipe pipeline as pictures: the partition of the layers and each partition's cost.

The input is the balance result of :mod:`nasmed.pipeline.balance`: the profiled
:class:`~nasmed.pipeline.balance.LayerCost` of every layer of the flat sequence and the balance
(layers per partition). The top panel shows each layer's share of the cost, coloured by its
partition; the bottom panels show what each partition holds: its share of the balanced cost
against the ideal ``1 / partitions``, and its time and memory (weights x3 and activations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from nasmed.errors import ConfigError
from nasmed.pipeline.balance import (
    PARAM_COPIES,
    BalanceBy,
    LayerCost,
    layer_weights,
    partition_costs,
)
from nasmed.viz.figure import new_figure

__all__ = ["plot_balance", "plot_memory_comparison"]

_MB = 2.0**20


def plot_balance(
    costs: Sequence[LayerCost],
    balance: Sequence[int],
    *,
    devices: Sequence[str] | None = None,
    by: BalanceBy | str = BalanceBy.MIXED,
    title: str | None = None,
) -> Figure:
    """The partition of the layers and the cost of each partition.

    Args:
        costs: the profiled layers (:func:`~nasmed.pipeline.balance.profile_layers`).
        balance: layers per partition (sums to ``len(costs)``).
        devices: each partition's device, for the labels.
        by: which cost the balance evened out (``time``, ``memory`` or ``mixed``).
        title: the figure's title.

    Returns:
        A figure with three axes: per-layer shares, per-partition share, per-partition time
        and memory.

    Raises:
        ConfigError: the balance does not cover the layers.
    """
    if sum(balance) != len(costs) or min(balance, default=0) < 1:
        raise ConfigError(
            f"balance {list(balance)} does not split {len(costs)} layers into non-empty parts"
        )
    by = BalanceBy(by)
    shares = layer_weights(costs, by)
    part_of = np.repeat(np.arange(len(balance)), balance)
    colors = [f"C{p % 10}" for p in part_of]
    names = [
        f"part {p}" + (f"\n{devices[p]}" if devices is not None and p < len(devices) else "")
        for p in range(len(balance))
    ]
    fig = Figure(figsize=(max(7.0, 0.18 * len(costs) + 2.0), 6.0), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[1.2, 1.0])
    ax_layers = fig.add_subplot(grid[0, :])
    ax_share = fig.add_subplot(grid[1, 0])
    ax_cost = fig.add_subplot(grid[1, 1])

    x = np.arange(len(costs))
    ax_layers.bar(x, shares, color=colors, width=0.85)
    for cut in np.cumsum(balance)[:-1]:
        ax_layers.axvline(cut - 0.5, color="black", ls="--", lw=0.8)
    if len(costs) <= 60:
        ax_layers.set_xticks(x, [c.name for c in costs], rotation=90, fontsize=6)
    ax_layers.set_xlim(-0.6, len(costs) - 0.4)
    ax_layers.set_ylabel(f"share of {by.value} cost", fontsize=8)
    ax_layers.set_title(
        f"{len(costs)} layers in {len(balance)} partitions {list(balance)}", fontsize=9
    )
    ax_layers.tick_params(axis="y", labelsize=7)

    parts = partition_costs(shares, balance)
    p = np.arange(len(balance))
    ax_share.bar(p, parts, color=[f"C{i % 10}" for i in p])
    ax_share.axhline(1.0 / len(balance), color="black", ls=":", lw=1, label="ideal")
    for i, v in enumerate(parts):
        ax_share.text(i, v, f"{v:.0%}", ha="center", va="bottom", fontsize=7)
    ax_share.set_xticks(p, names, fontsize=7)
    ax_share.set_ylabel(f"share of {by.value} cost", fontsize=8)
    ax_share.set_ylim(0, max(parts) * 1.2)
    ax_share.legend(fontsize=7)
    ax_share.tick_params(axis="y", labelsize=7)

    starts = np.concatenate([[0], np.cumsum(balance)[:-1]])
    ms = [1e3 * sum(c.seconds for c in costs[s : s + n]) for s, n in zip(starts, balance)]
    weights = [
        sum(PARAM_COPIES * c.param_bytes for c in costs[s : s + n]) / _MB
        for s, n in zip(starts, balance)
    ]
    acts = [
        sum(c.activation_bytes for c in costs[s : s + n]) / _MB for s, n in zip(starts, balance)
    ]
    ax_cost.bar(p - 0.2, weights, width=0.4, color="#9ecae1", label=f"weights x{PARAM_COPIES} (MB)")
    ax_cost.bar(p - 0.2, acts, width=0.4, bottom=weights, color="#3182bd", label="activations (MB)")
    ax_time = ax_cost.twinx()
    ax_time.bar(p + 0.2, ms, width=0.4, color="#fd8d3c", label="time (ms)")
    ax_cost.set_xticks(p, names, fontsize=7)
    ax_cost.set_ylabel("memory (MB)", fontsize=8)
    ax_time.set_ylabel("forward + backward (ms)", fontsize=8)
    ax_cost.tick_params(axis="y", labelsize=7)
    ax_time.tick_params(axis="y", labelsize=7)
    handles = ax_cost.get_legend_handles_labels()
    more = ax_time.get_legend_handles_labels()
    ax_cost.legend(handles[0] + more[0], handles[1] + more[1], fontsize=6, loc="upper right")
    ax_cost.set_ylim(0, max(w + a for w, a in zip(weights, acts)) * 1.45 or 1.0)
    ax_time.set_ylim(0, max(ms) * 1.45 or 1.0)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_memory_comparison(
    values: Mapping[str, float], *, unit: str = "MB", title: str | None = None
) -> Figure:
    """Bars of a measured quantity per setting (e.g. peak memory plain vs pipelined).

    Args:
        values: ``{setting: value}``, drawn in order; the first is the reference the others
            are compared with (``0.44x``).
        unit: the values' unit, for the axis label.
        title: the figure's title.
    """
    if not values:
        raise ConfigError("nothing to compare: no values")
    names = list(values)
    v = [float(values[k]) for k in names]
    fig, axes = new_figure(1, 1, size=(1.3 * len(v) + 2.2, 3.2))
    ax = axes[0, 0]
    ax.bar(range(len(v)), v, color=[f"C{i % 10}" for i in range(len(v))])
    for i, value in enumerate(v):
        ratio = f"\n{value / v[0]:.2f}x" if i and v[0] > 0 else ""
        ax.text(i, value, f"{value:.4g} {unit}{ratio}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(v)), names, fontsize=8)
    ax.set_ylabel(unit, fontsize=8)
    ax.set_ylim(0, max(v) * 1.3 or 1.0)
    ax.tick_params(axis="y", labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
