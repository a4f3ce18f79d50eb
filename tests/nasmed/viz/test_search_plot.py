"""Alpha heatmaps from snapshots and the search's curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.patches import Rectangle

import searchspaces
from nasmed.errors import RunDirError
from nasmed.search.decode import decode
from nasmed.viz.figure import save_png
from nasmed.viz.search import (
    load_alpha_snapshots,
    op_probabilities,
    plot_alpha_heatmaps,
    plot_search_history,
)

from .conftest import assert_png


def _write_snapshots(run: Path, epochs: int) -> searchspaces.SearchSpace:
    space = searchspaces.load("scnas-small")
    rng = np.random.default_rng(0)
    n_edges, n_ops = len(space.edges()), len(space.ops)
    for epoch in range(epochs):
        logits = {
            key: {
                "ops": (rng.normal(size=(n_edges, n_ops)) * epoch).tolist(),
                "inputs": (rng.normal(size=n_edges) * epoch).tolist(),
            }
            for key in space.arch_keys()
        }
        data = {
            "epoch": epoch,
            "tau": 5.0 - epoch,
            "space": space.name,
            "space_hash": space.content_hash(),
            "ops": list(space.ops),
            "edges": [list(e) for e in space.edges()],
            "logits": logits,
        }
        (run / "alphas").mkdir(parents=True, exist_ok=True)
        (run / "alphas" / f"epoch_{epoch:04d}.json").write_text(json.dumps(data))
    return space


def test_heatmaps_over_the_search(tmp_path: Path) -> None:
    space = _write_snapshots(tmp_path, 6)
    snaps = load_alpha_snapshots(tmp_path)
    assert [s.epoch for s in snaps] == list(range(6))
    fig = plot_alpha_heatmaps(snaps, max_epochs=3)
    keys = space.arch_keys()
    heatmaps = [ax for ax in fig.get_axes() if ax.get_images()]
    assert len(heatmaps) == 3 * len(keys)
    assert [ax.get_title() for ax in heatmaps[:: len(keys)]] == [
        "encoder, epoch 0 (tau 5)",
        "encoder, epoch 2 (tau 3)",
        "encoder, epoch 5 (tau 0)",
    ]
    last = snaps[-1]
    genotype = decode(last.logits, space)
    ax = heatmaps[-1]  # the last key at the last epoch
    np.testing.assert_allclose(
        np.asarray(ax.get_images()[0].get_array()), op_probabilities(last.logits[keys[-1]]["ops"])
    )
    boxes = [(p.get_x() + 0.5, p.get_y() + 0.5) for p in ax.patches if isinstance(p, Rectangle)]
    expected = [
        (space.ops.index(op), space.edges().index(edge))
        for edge, op in genotype.cell(keys[-1]).edges().items()
    ]
    assert sorted(boxes) == sorted(expected)  # one box per decoded (kept) edge, on its op
    assert_png(save_png(fig, tmp_path / "a.png"))


def test_op_probabilities() -> None:
    p = op_probabilities(np.array([[0.0, 0.0], [np.log(3.0), 0.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.75, 0.25]])


def test_no_snapshots(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"no alphas/epoch_XXXX\.json"):
        load_alpha_snapshots(tmp_path)
    (tmp_path / "alphas").mkdir()
    (tmp_path / "alphas" / "epoch_0000.json").write_text("{")
    with pytest.raises(RunDirError, match="not a readable alpha snapshot"):
        load_alpha_snapshots(tmp_path)


def test_search_history_panels(tmp_path: Path) -> None:
    rows = [
        {
            "epoch": e,
            "tau": 5.0 - e,
            "loss_w": 1.0 / (e + 1),
            "loss_a": None if e == 0 else 0.5,
            "entropy_ops": 2.0 - 0.1 * e,
            "entropy_inputs": 1.0,
            "val_dice": 0.1 * e,
        }
        for e in range(4)
    ]
    fig = plot_search_history(rows)
    labels = [ax.get_ylabel() for ax in fig.get_axes() if ax.get_visible()]
    assert labels == ["temperature", "entropy (nats)", "loss", "validation Dice"]
    loss_ax = fig.get_axes()[2]
    assert [len(line.get_xdata()) for line in loss_ax.lines] == [4, 3]  # loss_a: no warm-up value
    assert_png(save_png(fig, tmp_path / "h.png"))
