"""Learning curves from history.csv."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasmed.errors import RunDirError
from nasmed.train.history import History
from nasmed.viz.curves import plot_columns, plot_learning_curves


def _history(run: Path, losses: list[float], dice: dict[int, float]) -> Path:
    h = History(run, tensorboard=False)
    for epoch, loss in enumerate(losses):
        row = {"epoch": epoch, "loss": loss}
        if epoch in dice:
            row["val_dice"] = dice[epoch]
        h.log(row)
    h.close()
    return run


def test_compare_two_runs(tmp_path: Path) -> None:
    a = _history(tmp_path / "a", [1.0, 0.8, 0.6, 0.5], {1: 0.3, 3: 0.6})
    b = _history(tmp_path / "b", [1.2, 1.0, 0.9], {2: 0.2})
    fig = plot_learning_curves({"transfer": a, "scratch": b / "history.csv"}, title="t")
    loss_ax, dice_ax = fig.get_axes()
    assert [line.get_label() for line in loss_ax.lines] == ["transfer", "scratch"]
    assert [list(line.get_xdata()) for line in dice_ax.lines] == [[1.0, 3.0], [2.0]]
    assert [list(line.get_ydata()) for line in dice_ax.lines] == [[0.3, 0.6], [0.2]]
    assert dice_ax.get_ylabel() == "val_dice"


def test_missing_history(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="no history rows"):
        plot_learning_curves(tmp_path)
    with pytest.raises(RunDirError, match="none of the columns"):
        plot_columns([{"epoch": 0, "loss": 1.0}], [("dice", ["val_dice"])])
