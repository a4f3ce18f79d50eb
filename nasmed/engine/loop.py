"""The one fit loop: epochs of a :class:`Task`, validation cadence, best tracking, time budget,
checkpoints and resume, with hooks (:mod:`nasmed.engine.callbacks`).

Training (:class:`nasmed.train.trainer.Trainer`) and the search
(:class:`nasmed.search.searcher.Searcher`) are tasks: they say what one epoch, one validation
and their state are; the :class:`Engine` decides when to validate (every ``val_every`` epochs,
after the last, and when the time budget ends the run), keeps the best score, writes
``history.csv`` and the checkpoint (``make_checkpoint(task.kind, ...)``) after every epoch,
resumes from it, and stops before the next epoch would pass the time budget.

A task may also decide for itself (optional methods, looked up on the task): ``can_continue(epoch)``
(before each epoch; an open-ended fit, ``epochs=None``, runs until it says no, as AutoCLINT's
time-budgeted classifier does), ``validation_due(epoch)`` (instead of the cadence) and a
``train_epoch`` that returns ``None`` when nothing could be trained (the fit ends there).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from nasmed.engine.budget import TimeBudget
from nasmed.engine.callbacks import (
    Callback,
    CheckpointFiles,
    EpochHook,
    HistoryLog,
    ProgressBar,
)
from nasmed.engine.checkpoint import make_checkpoint, restore_checkpoint
from nasmed.engine.rng import capture_rng, restore_rng
from nasmed.engine.strategy import Strategy

__all__ = ["Engine", "FitResult", "Task"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    """What :meth:`Engine.fit` ends with."""

    epochs: int
    best_dice: float | None
    best_epoch: int | None
    final_dice: float | None
    seconds_per_epoch: float
    stopped_by_time: bool = False


class Task(Protocol):
    """What the engine fits."""

    #: the checkpoint kind (``"train"``, ``"search"``)
    kind: str

    def train_epoch(self, epoch: int, engine: Engine) -> dict[str, Any] | None:
        """Train one epoch; returns its history row (``epoch``, ``seconds``, losses...), or
        ``None`` when nothing could be trained (the fit ends)."""

    def validate(self, epoch: int) -> dict[str, float]:
        """Score the network: ``{"val_dice": ..., ...}``."""

    def state_dict(self) -> dict[str, Any]:
        """The task's part of a checkpoint (``model``, optimizers...)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""

    def weights(self) -> dict[str, torch.Tensor]:
        """The network's weights (the best checkpoint's)."""

    def generators(self) -> dict[str, torch.Generator]:
        """Named generators whose states a resume restores."""

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """After validation, before the hooks (rank 0 writes extra files here)."""

    def describe(self, epoch: int, row: dict[str, Any]) -> str:
        """The epoch's log line (empty: none)."""


class Engine:
    """Fits ``task`` for ``epochs`` epochs.

    Args:
        task: what to fit.
        run_dir: the run folder (history, checkpoints).
        epochs: epochs in all (``None``: until the task's ``can_continue`` says no).
        steps_per_epoch: steps per epoch (for the progress bar).
        val_every: validate every this many epochs (and after the last one).
        validates: whether the task validates at all.
        time_budget: seconds (``None``: every epoch runs).
        strategy: how the fit runs over processes (checkpoint state, shared scores).
        checkpoint: the checkpoint files (``None``: none, no resume).
        history: write ``history.csv`` and TensorBoard events.
        score_key: the validation score whose best the engine tracks.
        progress: show a progress bar.
        on_epoch_end: the caller's hook after each epoch's checkpoint.
        callbacks: more hooks, called after the built-in ones.
        map_location: where a resumed checkpoint's tensors go.
    """

    def __init__(
        self,
        task: Task,
        *,
        run_dir: str | Path,
        epochs: int | None,
        steps_per_epoch: int,
        val_every: int = 1,
        validates: bool = True,
        time_budget: float | None = None,
        strategy: Strategy,
        checkpoint: CheckpointFiles | None,
        history: bool = True,
        score_key: str = "val_dice",
        progress: bool = True,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
        callbacks: Sequence[Callback] = (),
        map_location: Any = "cpu",
    ) -> None:
        self.task = task
        self.run_dir = Path(run_dir)
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.val_every = val_every
        self.validates = validates
        self.budget = TimeBudget(time_budget)
        self.strategy = strategy
        self.checkpoint = checkpoint
        self.map_location = map_location
        self.score_key = score_key
        self.bar = ProgressBar(progress, task.kind)
        self.callbacks: list[Callback] = [HistoryLog()] if history else []
        if checkpoint is not None:
            self.callbacks.append(checkpoint)
        self.callbacks.append(self.bar)
        if on_epoch_end is not None:
            self.callbacks.append(EpochHook(on_epoch_end))
        self.callbacks.extend(callbacks)
        self.start_epoch = 0
        self.best_dice: float | None = None
        self.best_epoch: int | None = None
        self.final_dice: float | None = None
        self.stopping = False
        self.earlier_rows: list[dict[str, Any]] = []

    # ---- checkpoints ----------------------------------------------------------------------

    def checkpoint_state(self, next_epoch: int) -> dict[str, Any]:
        """The resume point after ``next_epoch - 1`` (weights-only loadable)."""
        return make_checkpoint(
            self.task.kind,
            **self.task.state_dict(),
            epoch=next_epoch,
            best_dice=self.best_dice,
            best_epoch=self.best_epoch,
            final_dice=self.final_dice,
            rng=capture_rng(self.task.generators()),
            **self.strategy.checkpoint_state(),
        )

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`checkpoint_state`."""
        assert self.checkpoint is not None
        self.strategy.check_state(state, self.checkpoint.path(self.run_dir))
        self.task.load_state_dict(state)
        self.start_epoch = int(state["epoch"])
        self.best_dice = state.get("best_dice")
        self.best_epoch = state.get("best_epoch")
        self.final_dice = state.get("final_dice")
        restore_rng(state["rng"], self.task.generators())

    def resume(self) -> bool:
        """Load the resume point if there is one; returns whether it did."""
        if self.checkpoint is None:
            return False
        path = self.checkpoint.path(self.run_dir)
        if not path.is_file():
            return False
        restore_checkpoint(
            path, self.load_checkpoint_state, map_location=self.map_location, kind=self.task.kind
        )
        log.info("resuming %s after epoch %d", self.run_dir, self.start_epoch)
        return True

    # ---- the loop -------------------------------------------------------------------------

    def is_last(self, epoch: int) -> bool:
        """Whether ``epoch`` is the last of a fit of fixed length."""
        return self.epochs is not None and epoch == self.epochs - 1

    def due(self, epoch: int) -> bool:
        """Whether ``epoch`` validates (the task's ``validation_due``, else the cadence)."""
        if not self.validates:
            return False
        decide = getattr(self.task, "validation_due", None)
        if decide is not None:
            return bool(decide(epoch))
        last = self.stopping or self.is_last(epoch)
        return last or (epoch + 1) % self.val_every == 0

    def _can_continue(self, epoch: int) -> bool:
        if self.epochs is not None and epoch >= self.epochs:
            return False
        decide = getattr(self.task, "can_continue", None)
        return decide is None or bool(decide(epoch))

    def _validate(self, epoch: int, row: dict[str, Any]) -> None:
        scores = self.strategy.share(self.task.validate(epoch))
        row.update(scores)
        dice = float(scores.get(self.score_key, math.nan))
        self.final_dice = dice if math.isfinite(dice) else None
        if math.isfinite(dice) and (self.best_dice is None or dice > self.best_dice):
            self.best_dice, self.best_epoch = dice, epoch
            for cb in self.callbacks:
                cb.on_best(self, epoch, dice)

    def fit(self, *, resume: bool = False) -> FitResult:
        """Fit from the start (or from the resume point when ``resume``)."""
        if resume:
            self.resume()
        self.budget.start()
        done = 0
        stopped = False
        try:
            for cb in self.callbacks:
                cb.on_fit_start(self)
            seconds = [float(r["seconds"]) for r in self.earlier_rows if r.get("seconds")]
            epoch = self.start_epoch
            while self._can_continue(epoch):
                row = self.task.train_epoch(epoch, self)
                if row is None:
                    break
                seconds.append(float(row["seconds"]))
                done += 1
                stopped = (
                    self.epochs is not None and not self.is_last(epoch)
                ) and self.budget.exhausted(done)
                self.stopping = stopped
                if self.due(epoch):
                    self._validate(epoch, row)
                self.task.end_epoch(epoch, row)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, row)
                line = self.task.describe(epoch, row)
                if line:
                    log.info("epoch %d/%s: %s", epoch + 1, self.epochs or "?", line)
                if stopped:
                    log.info(
                        "time budget of %.0f s: stopping after epoch %d/%d (%.0f s)",
                        self.budget.seconds,
                        epoch + 1,
                        self.epochs,
                        self.budget.elapsed(),
                    )
                    break
                epoch += 1
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(self)
        return FitResult(
            epochs=self.start_epoch + done if stopped or self.epochs is None else self.epochs,
            best_dice=self.best_dice,
            best_epoch=self.best_epoch,
            final_dice=self.final_dice,
            seconds_per_epoch=sum(seconds) / len(seconds) if seconds else math.nan,
            stopped_by_time=stopped,
        )
