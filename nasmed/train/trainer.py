"""The fit loop: Dice + CE, SGD (Nesterov, poly decay) or AdamW, AMP on CUDA, checkpoints, resume.

One epoch is ``steps_per_epoch`` batches of patches from the preprocessed cache
(:func:`decathlon.sampling.make_loader`, whose patches depend only on ``(seed, epoch, index)``).
The patches are augmented in the loader workers (:class:`~nasmed.train.augment.Augmenter`, nnU-Net's
recipe unless ``config.augment`` is off). The learning rate follows nnU-Net's poly schedule per
epoch, ``lr * (1 - epoch / epochs) ** 0.9``; with ``config.time_budget`` the run stops before the
budget (validating and checkpointing its last epoch) and the schedule follows the larger of the
epoch and time fractions.
Every ``val_every`` epochs (and after the last) a validation callable scores the network; the best
score's weights go to ``checkpoints/best.pt``. After every epoch ``checkpoints/last.pt`` holds the
network, optimizer, grad scaler, epoch, best score and every RNG state, written atomically, so a
killed run resumed from it ends with the same weights and history as an uninterrupted one (on
CPU; CUDA kernels may differ in the last bits).

The pieces a pipelined (torchgpipe) or data-parallel run replaces are small methods:
:meth:`Trainer.wrap_model`, :meth:`Trainer.forward`, :meth:`Trainer.compute_loss`,
:meth:`Trainer.backward`, :meth:`Trainer.optimizer_step`. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from decathlon.sampling import make_loader
from nasmed.distributed import is_main
from nasmed.errors import ConfigError
from nasmed.train.augment import Augmenter
from nasmed.train.checkpoint import capture_rng, restore_checkpoint, restore_rng, save_checkpoint
from nasmed.train.config import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, TrainConfig
from nasmed.train.history import History
from nasmed.train.losses import DeepSupervisionLoss, make_seg_loss

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_WEIGHT_DECAY",
    "FitResult",
    "TrainConfig",
    "Trainer",
    "ValidateFn",
]

log = logging.getLogger(__name__)

#: Scores a network: returns at least ``{"dice": mean foreground Dice}``; may add more keys.
ValidateFn = Callable[[nn.Module], dict[str, float]]


@dataclass(frozen=True)
class FitResult:
    """What :meth:`Trainer.fit` ends with."""

    epochs: int
    best_dice: float | None
    best_epoch: int | None
    final_dice: float | None
    seconds_per_epoch: float
    stopped_by_time: bool = False


class Trainer:
    """Trains one network on patches of a preprocessed cache.

    Args:
        model: the network (on any device; moved to ``device``).
        config: the settings.
        cache_dir: the preprocessed cache (``WORK_DIR/cache``).
        train_cases: case names to draw training patches from.
        run_dir: where ``checkpoints/``, ``history.csv`` and ``tensorboard/`` go.
        device: the torch device.
        validate: scores the network (see :data:`ValidateFn`), or ``None`` for no validation.
        frozen: parameter names kept fixed during the first ``config.freeze_epochs`` epochs.
        progress: show a tqdm bar per epoch.
        on_epoch_end: called with ``(epoch, history row)`` after each epoch's checkpoint
            (a test seam: raising ``KeyboardInterrupt`` there simulates a kill).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        cache_dir: str | Path,
        train_cases: Sequence[str],
        run_dir: str | Path,
        device: torch.device,
        validate: ValidateFn | None = None,
        frozen: Iterable[str] = (),
        progress: bool = True,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        if config.patch is None:
            raise ConfigError("the trainer needs a patch (TrainConfig.patch)")
        self.config = config
        self.patch: tuple[int, int, int] = config.patch
        self.device = device
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.model = model.to(device)
        self.net = self.wrap_model(self.model)
        self.validate_fn = validate
        self.frozen = set(frozen)
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.amp = (
            (device.type == "cuda")
            if config.amp is None
            else (config.amp and device.type == "cuda")
        )
        self.loss_fn = DeepSupervisionLoss(make_seg_loss())
        self.optimizer = self.build_optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.transform = Augmenter(config.augment) if config.augment.active else None
        self.loader = make_loader(
            cache_dir,
            list(train_cases),
            self.patch,
            batch_size=config.batch_size,
            workers=config.workers,
            samples_per_epoch=config.steps_per_epoch * config.batch_size,
            seed=config.seed,
            pin_memory=device.type == "cuda",
            transform=self.transform,
        )
        self.start_epoch = 0
        self.started_at = time.monotonic()
        self.stopping = False  # the time budget ends the run after this epoch
        self.best_dice: float | None = None
        self.best_epoch: int | None = None

    # ---- the pieces another parallelism plugs into ----------------------------------------

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """The module that runs forward/backward (DDP or a pipeline wraps ``model`` here)."""
        return model

    def build_optimizer(self) -> torch.optim.Optimizer:
        """SGD with Nesterov momentum (nnU-Net) or AdamW over every parameter."""
        c = self.config
        params = list(self.model.parameters())
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                params,
                lr=c.learning_rate,
                momentum=c.momentum,
                nesterov=c.momentum > 0,
                weight_decay=c.decay,
            )
        return torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.decay)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision on CUDA (float16), nothing elsewhere."""
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The network's output for a batch (logits, or a tuple with deep supervision)."""
        with self.autocast():
            out: torch.Tensor | tuple[torch.Tensor, ...] = self.net(image)
        return out

    def compute_loss(
        self, output: torch.Tensor | tuple[torch.Tensor, ...], label: torch.Tensor
    ) -> torch.Tensor:
        """Dice + CE (weighted over scales with deep supervision), in float32."""
        if isinstance(output, torch.Tensor):
            output = output.float()
        else:
            output = tuple(o.float() for o in output)
        loss: torch.Tensor = self.loss_fn(output, label)
        return loss

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate (through the AMP grad scaler)."""
        self.scaler.scale(loss).backward()

    def optimizer_step(self) -> None:
        """Clip gradients and step the optimizer (through the grad scaler)."""
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for p in self.model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    # ---- the loop -------------------------------------------------------------------------

    def lr_at(self, epoch: int) -> float:
        """The poly learning rate of ``epoch`` (and of the time spent, with a time budget)."""
        c = self.config
        done = epoch / c.epochs
        if c.time_budget is not None:
            done = max(done, min(1.0, self.elapsed() / c.time_budget))
        return c.learning_rate * max(0.0, 1 - done) ** c.poly_exponent

    def elapsed(self) -> float:
        """Seconds since this trainer started (or resumed)."""
        return time.monotonic() - self.started_at

    def out_of_time(self, epochs_done: int) -> bool:
        """Whether another epoch, at the mean pace so far, would pass the time budget."""
        budget = self.config.time_budget
        if budget is None or epochs_done <= 0:
            return False
        elapsed = self.elapsed()
        return elapsed + elapsed / epochs_done > budget

    def _set_frozen(self, epoch: int) -> bool:
        freeze = epoch < self.config.freeze_epochs
        for name, p in self.model.named_parameters():
            if name in self.frozen:
                p.requires_grad_(not freeze)
        return freeze and bool(self.frozen)

    def train_step(self, batch: dict[str, Any]) -> float:
        """One optimisation step on a batch; returns the loss."""
        image = batch["image"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.compute_loss(self.forward(image), label)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()}; lower --lr")
        self.backward(loss)
        self.optimizer_step()
        return float(loss.detach())

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch of training; returns its history fields."""
        self.net.train()
        lr = self.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        frozen = self._set_frozen(epoch)
        self.loader.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        losses: list[float] = []
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            unit="step",
            leave=False,
            disable=not (self.progress and is_main()),
        )
        for batch in bar:
            losses.append(self.train_step(batch))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        seconds = time.perf_counter() - start
        row: dict[str, Any] = {
            "epoch": epoch,
            "loss": sum(losses) / len(losses),
            "lr": lr,
            "encoder_frozen": int(frozen),
            "seconds": round(seconds, 3),
        }
        if self.device.type == "cuda":
            row["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return row

    def validate(self, epoch: int) -> dict[str, float] | None:
        """Score the network if this epoch validates (or is the last one); ``None`` otherwise."""
        last = self.stopping or epoch == self.config.epochs - 1
        if self.validate_fn is None or not (last or (epoch + 1) % self.config.val_every == 0):
            return None
        self.net.eval()
        with torch.no_grad(), self.autocast():
            scores = self.validate_fn(self.model)
        return {f"val_{k}": float(v) for k, v in scores.items()}

    def checkpoint_state(self, next_epoch: int) -> dict[str, Any]:
        """Everything a resume needs (weights-only loadable)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": next_epoch,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "rng": capture_rng(),
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`checkpoint_state`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.best_dice = state.get("best_dice")
        self.best_epoch = state.get("best_epoch")
        restore_rng(state["rng"])

    def resume(self) -> bool:
        """Load ``checkpoints/last.pt`` if there is one; returns whether it did."""
        last = self.ckpt_dir / "last.pt"
        if not last.is_file():
            return False
        restore_checkpoint(last, self.load_checkpoint_state, map_location=self.device)
        log.info("resuming %s after epoch %d", self.run_dir, self.start_epoch)
        return True

    def fit(self, *, resume: bool = False) -> FitResult:
        """Train from the start (or from ``checkpoints/last.pt`` when ``resume``)."""
        if resume:
            self.resume()
        self.started_at = time.monotonic()
        stopped = False
        done = 0
        # a resumed run reports the epochs it ran before too (a run resumed after its last
        # epoch trains nothing, and still writes a complete model.json)
        history = History(self.run_dir, resume_epoch=self.start_epoch) if is_main() else None
        final: float | None = None
        seconds: list[float] = []
        for done_row in history.rows if history is not None else []:
            if done_row.get("seconds") is not None:
                seconds.append(float(done_row["seconds"]))
            if done_row.get("val_dice") is not None:
                final = float(done_row["val_dice"])
        try:
            for epoch in range(self.start_epoch, self.config.epochs):
                row = self.train_epoch(epoch)
                seconds.append(float(row["seconds"]))
                done += 1
                stopped = epoch < self.config.epochs - 1 and self.out_of_time(done)
                self.stopping = stopped
                scores = self.validate(epoch)
                if scores is not None:
                    row.update(scores)
                    dice = scores.get("val_dice", math.nan)
                    final = dice
                    if math.isfinite(dice) and (self.best_dice is None or dice > self.best_dice):
                        self.best_dice, self.best_epoch = dice, epoch
                        if is_main():
                            save_checkpoint(
                                self.ckpt_dir / "best.pt",
                                {"model": self.model.state_dict(), "epoch": epoch, "dice": dice},
                            )
                if is_main():
                    assert history is not None
                    history.log(row)
                    save_checkpoint(self.ckpt_dir / "last.pt", self.checkpoint_state(epoch + 1))
                log.info(
                    "epoch %d/%d: loss %.4f%s (%.1f s)",
                    epoch + 1,
                    self.config.epochs,
                    row["loss"],
                    f", val Dice {row['val_dice']:.4f}" if "val_dice" in row else "",
                    row["seconds"],
                )
                if self.on_epoch_end is not None:
                    self.on_epoch_end(epoch, row)
                if stopped:
                    log.info(
                        "time budget of %.0f s: stopping after epoch %d/%d (%.0f s)",
                        self.config.time_budget,
                        epoch + 1,
                        self.config.epochs,
                        self.elapsed(),
                    )
                    break
        finally:
            if history is not None:
                history.close()
        self._set_frozen(self.config.epochs)  # leave every parameter trainable
        return FitResult(
            epochs=self.start_epoch + done if stopped else self.config.epochs,
            best_dice=self.best_dice,
            best_epoch=self.best_epoch,
            final_dice=final,
            seconds_per_epoch=sum(seconds) / len(seconds) if seconds else math.nan,
            stopped_by_time=stopped,
        )
