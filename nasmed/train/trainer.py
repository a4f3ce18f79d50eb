"""Training as a task of the one fit loop (:class:`~nasmed.engine.loop.Engine`).

One epoch is ``steps_per_epoch`` batches of patches from the preprocessed cache
(:func:`decathlon.sampling.make_loader`, whose patches depend only on ``(seed, epoch, index)``).
The patches are augmented in the loader workers (:class:`~nasmed.train.augment.Augmenter`, nnU-Net's
recipe unless ``config.augment`` is off). The learning rate follows nnU-Net's poly schedule per
epoch, ``lr * (1 - epoch / epochs) ** 0.9``; with ``config.time_budget`` the run stops before the
budget (validating and checkpointing its last epoch) and the schedule follows the larger of the
epoch and time fractions.
The engine validates every ``val_every`` epochs (and after the last); the best score's weights go
to ``checkpoints/best.pt``. After every epoch ``checkpoints/last.pt`` holds the network,
optimizer, grad scaler, epoch, best score and every RNG state (the ``train`` kind of
:mod:`nasmed.engine.checkpoint`), written atomically, so a killed run resumed from it ends with
the same weights and history as an uninterrupted one (on CPU; CUDA kernels may differ in the last
bits).

How the network runs over processes and devices is the ``strategy``'s
(:mod:`nasmed.engine.strategy`: one process, DDP, or a pipeline); precision is
:class:`~nasmed.engine.precision.Precision`'s (``config.amp``, ``config.amp_dtype``); activation
checkpointing is ``config.activation_checkpointing``. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from decathlon.sampling import make_loader
from nasmed.engine.activation import enable_activation_checkpointing
from nasmed.engine.callbacks import CheckpointFiles
from nasmed.engine.defaults import ValidateFn
from nasmed.engine.loop import Engine, FitResult
from nasmed.engine.precision import Precision, resolve_precision
from nasmed.engine.strategy import DataParallel, Strategy
from nasmed.errors import ConfigError
from nasmed.train.augment import Augmenter
from nasmed.train.config import DEFAULT_LR, TrainConfig, foreground_fraction
from nasmed.train.losses import DeepSupervisionLoss, make_seg_loss

__all__ = ["BEST", "DEFAULT_LR", "LAST", "FitResult", "TrainConfig", "Trainer", "ValidateFn"]

log = logging.getLogger(__name__)

LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"


class Trainer:
    """Trains one network on patches of a preprocessed cache.

    Args:
        model: the network (on any device; moved to ``device``).
        config: the settings (``batch_size`` is the global batch under DDP).
        cache_dir: the preprocessed cache (``WORK_DIR/cache``).
        train_cases: case names to draw training patches from.
        run_dir: where ``checkpoints/``, ``history.csv`` and ``tensorboard/`` go.
        device: the torch device (a pipeline strategy replaces it by its last partition's).
        validate: scores the network (see :data:`ValidateFn`), or ``None`` for no validation.
        frozen: parameter names kept fixed during the first ``config.freeze_epochs`` epochs.
        progress: show a tqdm bar.
        on_epoch_end: called with ``(epoch, history row)`` after each epoch's checkpoint
            (a test seam: raising ``KeyboardInterrupt`` there simulates a kill).
        strategy: how the run spreads over processes/devices (default
            :class:`~nasmed.engine.strategy.DataParallel`: DDP under torchrun, else one process).

    Raises:
        ConfigError: no patch, or a global batch that does not split over the ranks.
    """

    kind = "train"

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
        strategy: Strategy | None = None,
    ) -> None:
        if config.patch is None:
            raise ConfigError("the trainer needs a patch (TrainConfig.patch)")
        self.strategy = strategy if strategy is not None else DataParallel()
        self.strategy.check_batch(config.batch_size)
        self.config = config
        self.patch: tuple[int, int, int] = config.patch
        self.device = self.strategy.device(device)
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.frozen = set(frozen)
        self.model = model.to(self.device)
        if config.activation_checkpointing:
            enable_activation_checkpointing(self.model)
        self.net = self.strategy.wrap(self.model, self.device, find_unused=bool(self.frozen))
        self.validate_fn = validate
        mode = resolve_precision(config.amp, config.amp_dtype, self.device)
        if mode != "fp32" and not self.strategy.allows_amp:
            log.warning("mixed precision is off in a pipeline (partitions run in worker threads)")
            mode = "fp32"
        self.precision = Precision(mode, self.device)
        batch_dice = config.batch_dice is not False
        self.loss_fn = DeepSupervisionLoss(
            self.strategy.batch_loss(make_seg_loss(batch=batch_dice), batch_dice=batch_dice)
        )
        self.optimizer = self.build_optimizer()
        self.transform = Augmenter(config.augment) if config.augment.active else None
        self.loader = make_loader(
            cache_dir,
            list(train_cases),
            self.patch,
            batch_size=config.batch_size,
            workers=config.workers,
            samples_per_epoch=config.steps_per_epoch * config.batch_size,
            seed=config.seed,
            foreground_fraction=foreground_fraction(config.batch_size),
            pin_memory=self.device.type == "cuda",
            transform=self.transform,
            rank=self.strategy.rank,
            world=self.strategy.world,
        )
        if self.strategy.world > 1:
            log.info(
                "rank %d of %d: %d of %d patches per step",
                self.strategy.rank,
                self.strategy.world,
                config.batch_size // self.strategy.world,
                config.batch_size,
            )
        self.engine = Engine(
            self,
            run_dir=self.run_dir,
            epochs=config.epochs,
            steps_per_epoch=config.steps_per_epoch,
            val_every=config.val_every,
            validates=validate is not None,
            time_budget=config.time_budget,
            strategy=self.strategy,
            checkpoint=CheckpointFiles(LAST, BEST),
            progress=progress,
            on_epoch_end=on_epoch_end,
            map_location=self.device,
        )

    @property
    def amp(self) -> bool:
        """Whether mixed precision is on."""
        return self.precision.enabled

    @property
    def start_epoch(self) -> int:
        """The first epoch this fit trains (after a resume, the one after the checkpoint)."""
        return self.engine.start_epoch

    @property
    def best_dice(self) -> float | None:
        """The best validation Dice so far."""
        return self.engine.best_dice

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

    # ---- one step -------------------------------------------------------------------------

    def forward(self, image: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The network's output for a batch (logits, or a tuple with deep supervision)."""
        with self.precision.autocast():
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

    def train_step(self, batch: dict[str, Any]) -> float:
        """One optimisation step on a batch; returns the loss (averaged over ranks)."""
        image = batch["image"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.compute_loss(self.forward(image), label)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()}; lower --lr")
        self.precision.backward(loss)
        self.precision.step(self.optimizer, self.model.parameters(), self.config.grad_clip)
        return self.strategy.reduce(float(loss.detach()))

    # ---- the task of the engine -----------------------------------------------------------

    def lr_at(self, epoch: int) -> float:
        """The poly learning rate of ``epoch`` (and of the time spent, with a time budget)."""
        c = self.config
        done = max(epoch / c.epochs, self.engine.budget.fraction())
        return c.learning_rate * max(0.0, 1 - done) ** c.poly_exponent

    def _set_frozen(self, epoch: int) -> bool:
        freeze = epoch < self.config.freeze_epochs
        for name, p in self.model.named_parameters():
            if name in self.frozen:
                p.requires_grad_(not freeze)
        return freeze and bool(self.frozen)

    def train_epoch(self, epoch: int, engine: Engine) -> dict[str, Any]:
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
        for batch in self.loader:
            losses.append(self.train_step(batch))
            engine.bar.step(epoch=f"{epoch + 1}/{self.config.epochs}", loss=f"{losses[-1]:.4f}")
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

    def validate(self, epoch: int) -> dict[str, float]:
        """Score the network (every rank takes part; the cases are split over them)."""
        assert self.validate_fn is not None
        net = self.strategy.validation_net(self.model, self.net)
        net.eval()
        with torch.no_grad(), self.precision.autocast():
            scores = self.validate_fn(net)
        return {f"val_{k}": float(v) for k, v in scores.items()}

    def state_dict(self) -> dict[str, Any]:
        """The task's part of ``last.pt``: model, optimizer, grad scaler."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.precision.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.precision.load_state_dict(state.get("scaler") or {})

    def weights(self) -> dict[str, torch.Tensor]:
        """The network's weights."""
        return self.model.state_dict()

    def generators(self) -> dict[str, torch.Generator]:
        """No generators of its own (the patches depend on seed and epoch only)."""
        return {}

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """Nothing more to write."""

    def describe(self, epoch: int, row: dict[str, Any]) -> str:
        """The epoch's log line."""
        dice = f", val Dice {row['val_dice']:.4f}" if "val_dice" in row else ""
        return f"loss {row['loss']:.4f}{dice} ({row['seconds']:.1f} s)"

    def resume(self) -> bool:
        """Load ``checkpoints/last.pt`` if there is one; returns whether it did."""
        return self.engine.resume()

    def fit(self, *, resume: bool = False) -> FitResult:
        """Train from the start (or from ``checkpoints/last.pt`` when ``resume``)."""
        try:
            return self.engine.fit(resume=resume)
        finally:
            self._set_frozen(self.config.epochs)  # leave every parameter trainable
