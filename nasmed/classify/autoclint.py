"""AutoCLINT-style time-budgeted training: the budget in seconds is the only required setting.

Rules taken from AutoCLINT (REFERENCE §5), adapted to slices:

* input size from the data (:func:`auto_input_size`), batch size from the input size and the
  training set (:func:`auto_batch_size`); an "epoch" is a fixed number of steps (at most 20) of
  randomly drawn batches, so validation and predictions come regularly on any data size;
* multi-class when every training slice has exactly one label, else multi-label (class-balanced
  BCE); SGD with Nesterov momentum; linear warm-up for two epochs, then reduce-on-plateau on the
  epoch's training loss;
* validation is skipped while the training AUC is below ``val_skip_auc`` (0.9), but not more than
  ``max_skipped_val`` epochs in a row, and never right after the first epoch (a barely trained model
  that scores well on a small validation set by chance would otherwise block every later
  prediction); the best ``keep_best`` validated checkpoints are kept (in memory), and the final
  prediction uses the best; predictions average the slice and its horizontal flip;
* anytime predictions: the test slices are predicted after the first epoch and again whenever
  validation improves, at least ``min_gap`` (10 %) of the elapsed time after the previous one; each
  is written with its timestamp (``anytime/``) and scored for the ALC;
* the budget is checked before every step against the measured step time, the time one prediction
  takes, and a reserve for writing the results.

:class:`AutoClint` is a task of the one fit loop (:class:`~nasmed.engine.loop.Engine`, open-ended:
``epochs=None``): the engine runs the epochs while the budget allows one (``can_continue``),
asks the task when to validate (``validation_due``: the skip rules above), tracks the best
validation score and calls the anytime hook on each new best (keep the weights, predict); no
history file and no resume point (an AutoDL run is one budget, not resumed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch._dynamo  # torch.optim imports it on first use (1-2 s): not charged to a budget

from decathlon.slices import SliceSet
from nasmed.classify.alc import alc, autodl_score
from nasmed.classify.anytime import AnytimePrediction, ClintResult, write_anytime
from nasmed.classify.autoaugment.policy import Policy
from nasmed.classify.clint_rules import (
    auto_batch_size,
    auto_input_size,
    is_multilabel,
    mean_auc,
    predict,
)
from nasmed.classify.saol import Classifier
from nasmed.classify.selfsup import LossConfig, class_pos_weight, task_loss, total_loss
from nasmed.engine.callbacks import Callback
from nasmed.engine.loop import Engine
from nasmed.engine.strategy import SingleProcess

__all__ = [
    "AnytimePrediction",
    "AutoClint",
    "ClintConfig",
    "ClintResult",
    "auto_batch_size",
    "auto_input_size",
    "is_multilabel",
    "predict",
]

log = logging.getLogger(__name__)

LightSearch = Callable[[Classifier, torch.Tensor, torch.Tensor, float], Policy]


@dataclass(frozen=True)
class ClintConfig:
    """Settings of :class:`AutoClint`; only ``time_budget`` has no default."""

    time_budget: float
    batch_size: int | None = None
    max_steps_per_epoch: int = 20
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    plateau_patience: int = 2
    val_skip_auc: float = 0.9
    max_skipped_val: int = 4
    keep_best: int = 3
    tta: bool = True
    min_gap: float = 0.1
    reserve: float = 1.0
    loss: LossConfig = field(default_factory=LossConfig)
    seed: int = 0


class _Anytime(Callback):
    """The engine's best-score hook, handed to :meth:`AutoClint.on_best`."""

    def __init__(self, clint: AutoClint) -> None:
        self.clint = clint

    def on_best(self, engine: Any, epoch: int, dice: float) -> None:
        self.clint.on_best(dice)


class AutoClint:
    """Train ``model`` on ``train`` within a deadline, predicting ``test`` any time.

    Args:
        model: a :class:`Classifier` (already on ``device``).
        cfg: settings.
        train, val, test: slice sets (``test`` may be None; its targets score the ALC).
        device: torch device.
        clock_start: ``time.perf_counter()`` at which the budget started (default: now).
        out_dir: where ``anytime/`` predictions go (None: not written).
        policy: augmentation applied to training batches.
        light_search: called once when training saturates and enough budget remains:
            ``(model, x_val, y_val, seconds) -> policy to add``.
    """

    def __init__(
        self,
        model: Classifier,
        cfg: ClintConfig,
        train: SliceSet,
        val: SliceSet,
        test: SliceSet | None,
        device: torch.device,
        *,
        clock_start: float | None = None,
        out_dir: Path | None = None,
        policy: Policy | None = None,
        light_search: LightSearch | None = None,
    ) -> None:
        self.model, self.cfg, self.device = model, cfg, device
        self.t0 = time.perf_counter() if clock_start is None else clock_start
        self.deadline = self.t0 + cfg.time_budget
        self.x = torch.from_numpy(np.ascontiguousarray(train.images)).to(device)
        self.y = torch.from_numpy(train.targets.astype(np.float32)).to(device)
        self.xv = torch.from_numpy(np.ascontiguousarray(val.images)).to(device)
        self.yv = val.targets
        self.xt = (
            None if test is None else torch.from_numpy(np.ascontiguousarray(test.images)).to(device)
        )
        self.yt = None if test is None else test.targets
        self.multilabel = cfg.loss.multilabel
        self.pos_weight = class_pos_weight(self.y).to(device) if self.multilabel else None
        n = len(train)
        self.batch = cfg.batch_size or auto_batch_size(train.images.shape[-1], n)
        self.steps_per_epoch = max(1, min(cfg.max_steps_per_epoch, math.ceil(n / self.batch)))
        self.out_dir = out_dir
        self.policy = policy or Policy()
        self.light_search = light_search
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.opt = torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.opt, factor=0.5, patience=cfg.plateau_patience
        )
        self.predictions: list[AnytimePrediction] = []
        self.best: list[tuple[float, dict[str, torch.Tensor]]] = []
        self.history: list[dict[str, float]] = []
        self.step_time = 0.0
        self.predict_time = 0.0
        self.val_time = 0.0
        self.search: dict[str, float] = {}
        # the loop's bookkeeping (reset by run)
        self.steps = self.skipped = self.since_best = self.reductions = 0
        self.last_pred = -math.inf
        self.predicted_val = math.nan
        self.searched = False
        self._ready = False

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def _fits(self, seconds: float) -> bool:
        reserve = self.cfg.reserve + self.predict_time
        return time.perf_counter() + seconds + reserve <= self.deadline

    def _set_lr(self, epoch: int, step: int) -> None:
        warm = self.cfg.warmup_epochs * self.steps_per_epoch
        done = epoch * self.steps_per_epoch + step
        if done < warm:
            for g in self.opt.param_groups:
                g["lr"] = self.cfg.lr * (done + 1) / warm

    def _train_epoch(self, epoch: int) -> tuple[float, float, int]:
        losses, logits, labels, steps = [], [], [], 0
        for step in range(self.steps_per_epoch):
            if not self._fits(self.step_time * 1.2):
                break
            t = time.perf_counter()
            self._set_lr(epoch, step)
            idx = torch.randint(0, self.x.shape[0], (self.batch,), generator=self.gen)
            idx = idx.to(self.device)
            xb, yb = self.policy.apply(self.x[idx], self.gen), self.y[idx]
            loss, out = total_loss(self.model, xb, yb, self.cfg.loss, self.gen, self.pos_weight)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
            if out is not None:
                logits.append(out.float().cpu())
                labels.append(yb.cpu())
            steps += 1
            dt = time.perf_counter() - t
            self.step_time = dt if self.step_time == 0 else 0.7 * self.step_time + 0.3 * dt
        train_auc = math.nan
        if logits:
            train_auc = mean_auc(torch.cat(labels).numpy(), torch.cat(logits).numpy())
        return float(np.mean(losses)) if losses else math.nan, train_auc, steps

    def _validate(self) -> float:
        t = time.perf_counter()
        probs = predict(self.model, self.xv, self.multilabel, tta=False)
        self.val_time = max(self.val_time, time.perf_counter() - t)
        auc = mean_auc(self.yv, probs)
        if not math.isnan(auc):
            return auc
        logits = torch.logit(torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6))
        return -float(task_loss(logits, torch.from_numpy(self.yv), self.multilabel))

    def _keep(self, score: float) -> None:
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.best.append((score, state))
        self.best.sort(key=lambda item: -item[0])
        del self.best[self.cfg.keep_best :]

    def _predict_test(self) -> None:
        if self.xt is None:
            return
        t = time.perf_counter()
        probs = predict(self.model, self.xt, self.multilabel, tta=self.cfg.tta)
        self.predict_time = max(self.predict_time, time.perf_counter() - t)
        rec = AnytimePrediction(self.elapsed(), probs)
        if self.yt is not None:
            rec.score = autodl_score(self.yt, probs)
        self.predictions.append(rec)
        if self.out_dir is not None:
            self._write_anytime(rec)
        log.info(
            "prediction %d at %.1f s (score %s)", len(self.predictions), rec.seconds, rec.score
        )

    def _write_anytime(self, rec: AnytimePrediction) -> None:
        assert self.out_dir is not None
        write_anytime(self.out_dir / "anytime", len(self.predictions), rec)

    def _maybe_light_search(self, searched: bool, reductions: int, since_best: int) -> bool:
        if searched or self.light_search is None or (reductions == 0 and since_best < 3):
            return searched
        remaining = self.deadline - time.perf_counter()
        if remaining < min(120.0, 0.3 * self.cfg.time_budget):
            return searched
        seconds = min(0.15 * self.cfg.time_budget, 0.5 * remaining)
        t = time.perf_counter()
        added = self.light_search(self.model, self.xv, torch.from_numpy(self.yv), seconds)
        self.search = {"seconds": time.perf_counter() - t, "at_seconds": self.elapsed()}
        self.policy = self.policy + added
        log.info("light autoaugment: %d sub-policies added at %.1f s", len(added), self.elapsed())
        self.model.train()
        return True

    # ---- the task of the engine -----------------------------------------------------------

    kind = "classify"

    def can_continue(self, epoch: int) -> bool:
        """Whether half an epoch still fits the budget (minus the reserve)."""
        return self._fits(self.step_time * self.steps_per_epoch * 0.5)

    def train_epoch(self, epoch: int, engine: Engine) -> dict[str, float] | None:
        """One epoch of at most ``steps_per_epoch`` steps (``None``: no step fitted)."""
        loss, train_auc, n = self._train_epoch(epoch)
        if n == 0:
            return None
        self.steps += n
        row = {
            "epoch": epoch,
            "seconds": self.elapsed(),
            "loss": loss,
            "train_auc": train_auc,
            "lr": self.opt.param_groups[0]["lr"],
        }
        if epoch + 1 >= self.cfg.warmup_epochs and not math.isnan(loss):
            before = self.opt.param_groups[0]["lr"]
            self.plateau.step(loss)
            self.reductions += int(self.opt.param_groups[0]["lr"] < before)
        self._ready = not math.isnan(train_auc) and train_auc >= self.cfg.val_skip_auc
        return row

    def validation_due(self, epoch: int) -> bool:
        """Not after the first epoch (it predicts instead); else when the training AUC is
        high enough or too many were skipped, and a validation fits."""
        if epoch == 0:
            return False
        due = self._ready or self.skipped >= self.cfg.max_skipped_val
        if due and self._fits(self.val_time):
            self.skipped = 0
            return True
        self.skipped += 1
        return False

    def validate(self, epoch: int) -> dict[str, float]:
        """The validation score (mean AUC, or minus the loss where AUC is undefined)."""
        return {"val": self._validate()}

    def on_best(self, score: float) -> None:
        """Keep the weights; predict the test slices if the last prediction is old enough."""
        self.since_best = -1  # end_epoch counts it up to 0
        self._keep(score)
        gap = self.cfg.min_gap * self.elapsed()
        if self.elapsed() - self.last_pred >= gap and self._fits(0.0):
            self._predict_test()
            self.last_pred, self.predicted_val = self.elapsed(), score

    def end_epoch(self, epoch: int, row: dict[str, float]) -> None:
        """The first prediction after the first epoch; the history; the light autoaugment."""
        if epoch == 0:  # AutoCLINT: a first prediction right after the first epoch
            if self._fits(0.0):
                self._predict_test()
                self.last_pred = self.elapsed()
        elif "val" in row:
            self.since_best += 1
        self.history.append(row)
        self.searched = self._maybe_light_search(self.searched, self.reductions, self.since_best)

    def state_dict(self) -> dict[str, object]:
        """Not checkpointed (a budgeted run is not resumed)."""
        return {}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Not checkpointed."""

    def weights(self) -> dict[str, torch.Tensor]:
        """The classifier's weights."""
        return self.model.state_dict()

    def generators(self) -> dict[str, torch.Generator]:
        """The batch-drawing generator."""
        return {"batches": self.gen}

    def describe(self, epoch: int, row: dict[str, float]) -> str:
        """No per-epoch log line (epochs are short)."""
        return ""

    def run(self) -> ClintResult:
        """Train until the budget (minus the reserve) is spent; returns the anytime record."""
        self.model.train()
        engine = Engine(
            self,
            run_dir=self.out_dir or Path("."),
            epochs=None,
            steps_per_epoch=self.steps_per_epoch,
            strategy=SingleProcess(),
            checkpoint=None,
            history=False,
            score_key="val",
            progress=False,
            callbacks=[_Anytime(self)],
        )
        fit = engine.fit()
        epoch, steps = fit.epochs, self.steps
        best_val = fit.best_dice if fit.best_dice is not None else -math.inf
        predicted_val = self.predicted_val
        final = None
        if self.best:  # the best validated weights; never validated: the last weights
            self.model.load_state_dict(self.best[0][1])
        if self.xt is not None:
            stale = predicted_val != best_val if self.best else epoch > 1
            if not self.predictions or stale:
                self._predict_test()
            final = self.predictions[-1].probs if self.predictions else None
        score = None
        if self.yt is not None:
            times = [p.seconds for p in self.predictions]
            scores = [p.score or 0.0 for p in self.predictions]
            score = alc(times, scores, self.cfg.time_budget)
        return ClintResult(
            self.predictions,
            final,
            best_val,
            epoch,
            steps,
            score,
            self.policy,
            self.history,
            self.search,
        )
