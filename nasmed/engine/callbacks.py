"""Hooks of the fit loop: history, checkpoints, the progress bar, the caller's epoch hook.

Each is a :class:`Callback`; :class:`~nasmed.engine.loop.Engine` calls them in order. Only rank 0
writes files (:func:`nasmed.distributed.is_main`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from nasmed.distributed import is_main
from nasmed.engine.checkpoint import make_checkpoint, save_checkpoint
from nasmed.engine.history import History

__all__ = ["Callback", "CheckpointFiles", "EpochHook", "HistoryLog", "ProgressBar"]


class _Weights(Protocol):
    def weights(self) -> dict[str, torch.Tensor]: ...


class Engine(Protocol):
    """What a callback sees of :class:`~nasmed.engine.loop.Engine` (no import: no cycle)."""

    run_dir: Path
    epochs: int | None
    steps_per_epoch: int
    start_epoch: int
    earlier_rows: list[dict[str, Any]]

    @property
    def task(self) -> _Weights: ...

    def checkpoint_state(self, next_epoch: int) -> dict[str, Any]: ...


class Callback:
    """A hook of the fit loop; every method is optional."""

    def on_fit_start(self, engine: Engine) -> None:
        """After a resume, before the first epoch."""

    def on_best(self, engine: Engine, epoch: int, dice: float) -> None:
        """A validation that beat every earlier one."""

    def on_epoch_end(self, engine: Engine, epoch: int, row: dict[str, Any]) -> None:
        """After each epoch (trained, validated when due)."""

    def on_fit_end(self, engine: Engine) -> None:
        """Always, also when the fit is interrupted."""


class HistoryLog(Callback):
    """``history.csv`` + TensorBoard (:class:`~nasmed.engine.history.History`), rank 0."""

    def __init__(self) -> None:
        self.history: History | None = None

    def on_fit_start(self, engine: Engine) -> None:
        if is_main():
            self.history = History(engine.run_dir, resume_epoch=engine.start_epoch)
            engine.earlier_rows = list(self.history.rows)

    def on_epoch_end(self, engine: Engine, epoch: int, row: dict[str, Any]) -> None:
        if self.history is not None:
            self.history.log(row)

    def on_fit_end(self, engine: Engine) -> None:
        if self.history is not None:
            self.history.close()
            self.history = None


class CheckpointFiles(Callback):
    """The resume point after every epoch and, optionally, the best validated weights.

    Args:
        last: the resume point (relative to the run folder).
        best: the best validated weights (``None``: not kept).
    """

    def __init__(self, last: str, best: str | None = None) -> None:
        self.last = last
        self.best = best

    def on_best(self, engine: Engine, epoch: int, dice: float) -> None:
        if self.best is not None and is_main():
            state = make_checkpoint("weights", model=engine.task.weights(), epoch=epoch, dice=dice)
            save_checkpoint(engine.run_dir / self.best, state)

    def on_epoch_end(self, engine: Engine, epoch: int, row: dict[str, Any]) -> None:
        if is_main():
            save_checkpoint(engine.run_dir / self.last, engine.checkpoint_state(epoch + 1))

    def path(self, run_dir: Path) -> Path:
        """The resume point's path."""
        return run_dir / self.last


class ProgressBar(Callback):
    """One tqdm bar over every step of the fit (rank 0, when ``enabled``)."""

    def __init__(self, enabled: bool, desc: str) -> None:
        self.enabled = enabled
        self.desc = desc
        self.bar: Any = None

    def on_fit_start(self, engine: Engine) -> None:
        total = (
            None
            if engine.epochs is None
            else (engine.epochs - engine.start_epoch) * engine.steps_per_epoch
        )
        self.bar = tqdm(
            total=total, desc=self.desc, unit="step", disable=not (self.enabled and is_main())
        )

    def step(self, **postfix: Any) -> None:
        """One step done (``postfix``: the values shown)."""
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(**postfix)

    def on_fit_end(self, engine: Engine) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochHook(Callback):
    """The caller's ``f(epoch, row)`` after each epoch's checkpoint (raising
    ``KeyboardInterrupt`` there simulates a kill in tests)."""

    def __init__(self, fn: Callable[[int, dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, engine: Engine, epoch: int, row: dict[str, Any]) -> None:
        self.fn(epoch, row)
