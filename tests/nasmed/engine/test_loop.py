"""The fit loop on a planted task: cadence, best tracking, checkpoints, resume, time budget."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from nasmed.engine.callbacks import CheckpointFiles
from nasmed.engine.checkpoint import load_checkpoint
from nasmed.engine.history import read_history
from nasmed.engine.loop import Engine
from nasmed.engine.strategy import SingleProcess
from nasmed.errors import RunDirError

#: the planted validation scores of epochs 0.. (the best is epoch 3)
SCORES = [0.1, 0.4, 0.3, 0.9, 0.5, 0.2]


class Toy:
    """A task whose weights are the epochs trained and whose scores are planted."""

    kind = "train"

    def __init__(self, pause: float = 0.0, limit: int | None = None) -> None:
        self.w = torch.zeros(1)
        self.pause = pause
        self.limit = limit
        self.validated: list[int] = []

    def train_epoch(self, epoch: int, engine: Engine) -> dict[str, Any]:
        time.sleep(self.pause)
        self.w += 1
        return {"epoch": epoch, "loss": 1.0 / (epoch + 1), "seconds": self.pause}

    def validate(self, epoch: int) -> dict[str, float]:
        self.validated.append(epoch)
        return {"val_dice": SCORES[epoch]}

    def state_dict(self) -> dict[str, Any]:
        return {"model": {"w": self.w.clone()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w = state["model"]["w"].clone()

    def weights(self) -> dict[str, torch.Tensor]:
        return {"w": self.w.clone()}

    def generators(self) -> dict[str, torch.Generator]:
        return {}

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        pass

    def describe(self, epoch: int, row: dict[str, Any]) -> str:
        return f"loss {row['loss']:.3f}"


def _engine(task: Toy, run: Path, epochs: int | None = 6, **kw: Any) -> Engine:
    return Engine(
        task,
        run_dir=run,
        epochs=epochs,
        steps_per_epoch=1,
        strategy=SingleProcess(),
        checkpoint=CheckpointFiles("last.pt", "best.pt"),
        progress=False,
        **kw,
    )


def test_cadence_best_and_checkpoints(tmp_path: Path) -> None:
    task = Toy()
    result = _engine(task, tmp_path, val_every=2).fit()
    assert task.validated == [1, 3, 5]  # every 2 epochs; the last one is epoch 5
    assert (result.best_dice, result.best_epoch, result.final_dice) == (0.9, 3, 0.2)
    best = load_checkpoint(tmp_path / "best.pt", kind="weights")
    assert best["epoch"] == 3 and float(best["model"]["w"]) == 4.0  # weights after epoch 3
    last = load_checkpoint(tmp_path / "last.pt", kind="train")
    assert (last["epoch"], last["best_epoch"], last["world_size"]) == (6, 3, 1)
    rows = read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == list(range(6)) and rows[3]["val_dice"] == 0.9


def test_kill_and_resume_continue_where_it_stopped(tmp_path: Path) -> None:
    def kill(epoch: int, row: dict[str, Any]) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _engine(Toy(), tmp_path, on_epoch_end=kill).fit()
    task = Toy()
    result = _engine(task, tmp_path).fit(resume=True)
    assert task.validated == [3, 4, 5] and float(task.w) == 6.0
    assert (result.best_dice, result.best_epoch) == (0.9, 3)
    assert [r["epoch"] for r in read_history(tmp_path / "history.csv")] == list(range(6))
    with pytest.raises(RunDirError, match="it is a 'train' checkpoint, this run needs a 'search'"):
        task.kind = "search"
        _engine(task, tmp_path).fit(resume=True)


def test_time_budget_stops_validated_before_it_would_pass(tmp_path: Path) -> None:
    task = Toy(pause=0.1)
    result = _engine(task, tmp_path, val_every=10, time_budget=0.25).fit()
    assert result.stopped_by_time and result.epochs == 2  # a third epoch would end at ~0.3 s
    assert task.validated == [1]  # the stopping epoch is validated although not due


def test_open_ended_fit_asks_the_task(tmp_path: Path) -> None:
    class Until(Toy):
        def can_continue(self, epoch: int) -> bool:
            return epoch < 4

        def validation_due(self, epoch: int) -> bool:
            return epoch % 2 == 0

    task = Until()
    result = _engine(task, tmp_path, epochs=None, history=False).fit()
    assert result.epochs == 4 and task.validated == [0, 2]
    assert not (tmp_path / "history.csv").exists()
