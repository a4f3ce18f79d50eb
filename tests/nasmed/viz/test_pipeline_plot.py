"""The GPipe partition and per-partition cost."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.patches import Rectangle

from nasmed.errors import ConfigError
from nasmed.pipeline.balance import LayerCost, layer_weights, partition
from nasmed.viz.figure import save_png
from nasmed.viz.pipeline import plot_balance, plot_memory_comparison

from .conftest import assert_png


def _costs() -> list[LayerCost]:
    return [
        LayerCost(
            f"{i:02d}_layer", seconds=0.01 * (i + 1), param_bytes=1000 * i, activation_bytes=2**20
        )
        for i in range(6)
    ]


def _bars(ax: object) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]  # type: ignore[attr-defined]


def test_balance_figure(tmp_path: Path) -> None:
    costs = _costs()
    balance = partition(layer_weights(costs), 2)
    fig = plot_balance(costs, balance, devices=["cuda:0", "cuda:1"])
    layers, share, cost = fig.get_axes()[:3]
    bars = _bars(layers)
    assert len(bars) == 6
    # bars coloured by partition: the first balance[0] share one colour, the rest another
    colors = [b.get_facecolor() for b in bars]
    assert len(set(colors[: balance[0]])) == 1 and len(set(colors[balance[0] :])) == 1
    assert colors[0] != colors[-1]
    assert [t.get_text() for t in share.get_xticklabels()] == ["part 0\ncuda:0", "part 1\ncuda:1"]
    heights = [b.get_height() for b in _bars(share)]
    shares = layer_weights(costs)
    assert heights == pytest.approx([sum(shares[: balance[0]]), sum(shares[balance[0] :])])
    weights, activations = _bars(cost)[:2], _bars(cost)[2:4]
    assert [b.get_height() for b in activations] == pytest.approx(balance)  # 1 MB per layer
    mb = [
        3 * sum(c.param_bytes for c in part) / 2**20
        for part in (costs[: balance[0]], costs[balance[0] :])
    ]
    assert [b.get_height() for b in weights] == pytest.approx(mb)
    assert_png(save_png(fig, tmp_path / "b.png"))


def test_balance_must_cover_the_layers() -> None:
    with pytest.raises(ConfigError, match="does not split 6 layers"):
        plot_balance(_costs(), [2, 2])


def test_memory_comparison() -> None:
    fig = plot_memory_comparison({"plain": 3390.0, "pipelined": 1500.0}, unit="MB")
    (ax,) = fig.get_axes()
    assert [b.get_height() for b in _bars(ax)] == [3390.0, 1500.0]
    assert any("0.44x" in t.get_text() for t in ax.texts)
    with pytest.raises(ConfigError):
        plot_memory_comparison({})
