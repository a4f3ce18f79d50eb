"""The bilevel search loop over a :class:`~nasmed.supernet.Supernet` (:class:`Searcher`).

One epoch is ``steps_per_epoch`` steps. During the warm-up a step is one update of the weights
on a batch of the weights half (a fresh child sampled per step). After it, a step is a weights
update (SGD or AdamW) on a batch of the weights half followed by an architecture update (Adam) on
a batch of the architecture half, each with a fresh Gumbel sample: first-order alternating
updates (Kim et al. 2019). How the architecture step estimates the gradient of the logits is
the configured estimator's (:mod:`nasmed.search.estimators`: GDAS, ProxylessNAS or REINFORCE);
after each Adam(W) step on that estimate, the entropy term takes its own decoupled step
(:meth:`Searcher.decide_step`). Backward passes only accumulate into the parameters being
updated. The temperature, the entropy weight and the weights' learning rate are set per epoch.

Every patch depends only on ``(seed, epoch, index)`` (:func:`decathlon.sampling.make_loader`)
and the Gumbel noise comes from one CPU generator whose state is checkpointed, so a run resumed
after a kill repeats exactly what an uninterrupted run does (on CPU).

The search is a task of the one fit loop (:class:`~nasmed.engine.loop.Engine`: validation
cadence, time budget, ``history.csv``, the ``search`` checkpoint of
:mod:`nasmed.engine.checkpoint`, resume). How it runs over processes is the ``strategy``'s
(:mod:`nasmed.engine.strategy`; see :mod:`nasmed.search.ddp`); mixed precision
(``config.amp``) and activation checkpointing (``config.activation_checkpointing``) are the
engine's, as in training. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from decathlon.sampling import make_loader
from nasmed.distributed import is_main
from nasmed.engine.activation import enable_activation_checkpointing
from nasmed.engine.callbacks import CheckpointFiles
from nasmed.engine.defaults import ValidateFn, weight_decay
from nasmed.engine.loop import Engine
from nasmed.engine.precision import Precision, resolve_precision
from nasmed.engine.strategy import DataParallel, Strategy
from nasmed.genotype import Genotype
from nasmed.search.config import SearchConfig, WeightOptimizer
from nasmed.search.decode import decode
from nasmed.search.estimators import Gdas, make_estimator
from nasmed.search.monitor import ArgmaxChild, entropy_fields, peak_memory_mb, write_snapshot
from nasmed.supernet import Mode, Supernet, expected_cost
from nasmed.supernet.cell import CellPlan
from nasmed.train.augment import Augmenter
from nasmed.train.losses import make_seg_loss

__all__ = ["CHECKPOINT_FILE", "ArgmaxChild", "Searcher", "ValidateFn", "entropy_fields"]

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


class Searcher:
    """Runs the search of one supernet on the patches of a preprocessed cache.

    Args:
        supernet: the supernet (moved to ``device``).
        config: the settings.
        cache_dir: the preprocessed cache (``WORK_DIR/cache``); ``None``: no loaders, only the
            step methods are usable (benchmarks).
        weight_cases: cases whose patches update the weights.
        arch_cases: cases whose patches update the architecture.
        run_dir: where ``checkpoint.pt``, ``history.csv``, ``alphas/`` and ``tensorboard/`` go.
        device: the torch device.
        patch: the training patch.
        in_channels: image channels (for the expected cost).
        out_channels: classes (for the expected cost).
        generator: CPU generator of the Gumbel noise (seeded by the caller).
        validate: scores the argmax architecture (``None``: no validation).
        progress: a tqdm bar over the steps.
        on_epoch_end: called with ``(epoch, history row)`` after each epoch's checkpoint (a
            test seam: raising ``KeyboardInterrupt`` there simulates a kill).
        strategy: how the search spreads over processes (default
            :class:`~nasmed.engine.strategy.DataParallel`: ranks under torchrun, else one).

    Raises:
        ConfigError: a global batch that does not split over the ranks, or fp16 off CUDA.
    """

    kind = "search"

    def __init__(
        self,
        supernet: Supernet,
        config: SearchConfig,
        *,
        cache_dir: str | Path | None,
        weight_cases: Sequence[str] = (),
        arch_cases: Sequence[str] = (),
        run_dir: str | Path,
        device: torch.device,
        patch: tuple[int, int, int],
        in_channels: int,
        out_channels: int,
        generator: torch.Generator,
        validate: ValidateFn | None = None,
        progress: bool = True,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
        strategy: Strategy | None = None,
    ) -> None:
        self.strategy = strategy if strategy is not None else DataParallel()
        self.strategy.check_batch(config.batch_size)
        self.config = config
        self.device = device
        self.run_dir = Path(run_dir)
        self.patch = patch
        self.channels = (in_channels, out_channels)
        self.model = supernet.to(device)
        # not wrapped in torch's DDP: a step back-propagates into a subset of the parameters of
        # one sampled child, which DDP's reducer cannot follow (see nasmed.search.ddp)
        self.strategy.prepare_shared(self.model)
        if config.activation_checkpointing:
            enable_activation_checkpointing(self.model)
        self.net: nn.Module = self.model
        self.generator = generator
        self.validate_fn = validate
        self.precision = Precision(resolve_precision(config.amp, config.amp_dtype, device), device)
        # float16 scales each step's loss with its own scaler (two backward passes per step)
        self.arch_precision = Precision(self.precision.mode, device)
        self.loss_fn = self.strategy.batch_loss(make_seg_loss())
        self.weight_params = self.model.weight_parameters()
        self.arch_params = self.model.arch_parameters()
        self.w_opt = self.build_weight_optimizer()
        # decoupled decay (AdamW): a coupled L2 term would dominate gradients of about 1e-5
        self.a_opt = torch.optim.AdamW(
            self.arch_params,
            lr=config.arch_lr,
            betas=(0.5, 0.999),
            weight_decay=config.arch_weight_decay,
        )
        self.estimator = (
            make_estimator(config.estimator) if supernet.mode is Mode.SAMPLED else Gdas()
        )
        self.entropy_weight = 0.0
        loaders = [
            make_loader(
                cache_dir,
                list(cases),
                patch,
                batch_size=config.batch_size,
                workers=config.workers,
                samples_per_epoch=config.steps_per_epoch * config.batch_size,
                seed=config.seed + offset,
                pin_memory=device.type == "cuda",
                transform=Augmenter(config.augment)
                if offset == 0 and config.augment.active
                else None,
                rank=self.strategy.rank,
                world=self.strategy.world,
            )
            for offset, cases in enumerate((weight_cases, arch_cases))
            if cache_dir is not None
        ]
        self.w_loader: Any = loaders[0] if loaders else None
        self.a_loader: Any = loaders[1] if loaders else None
        self.engine = Engine(
            self,
            run_dir=self.run_dir,
            epochs=config.epochs,
            steps_per_epoch=config.steps_per_epoch,
            val_every=config.val_every,
            validates=validate is not None,
            time_budget=config.time_budget,
            strategy=self.strategy,
            checkpoint=CheckpointFiles(CHECKPOINT_FILE),
            progress=progress,
            on_epoch_end=on_epoch_end,
            map_location=device,
        )

    @property
    def start_epoch(self) -> int:
        """The first epoch this fit runs (after a resume, the one after the checkpoint)."""
        return self.engine.start_epoch

    @property
    def last_dice(self) -> float | None:
        """The last validation Dice of the argmax architecture."""
        return self.engine.final_dice

    def build_weight_optimizer(self) -> torch.optim.Optimizer:
        """SGD (Nesterov, momentum 0.9) or AdamW over the supernet's weights."""
        c = self.config
        wd = weight_decay(c.weight_optimizer, c.weight_decay)
        if c.weight_optimizer is WeightOptimizer.SGD:
            return torch.optim.SGD(
                self.weight_params, lr=c.learning_rate, momentum=0.9, nesterov=True, weight_decay=wd
            )
        return torch.optim.AdamW(self.weight_params, lr=c.learning_rate, weight_decay=wd)

    def sync_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Average the gradients of ``params`` over ranks (the strategy's; a no-op alone)."""
        self.strategy.sync_gradients(params)

    def seg_loss(
        self, batch: dict[str, Any], plans: Mapping[str, CellPlan] | None = None
    ) -> torch.Tensor:
        """Dice + CE on ``batch`` of ``plans`` (``None``: one freshly sampled child, or the
        mixture)."""
        image = batch["image"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        with self.precision.autocast():
            out = self.net(image, generator=self.generator, plans=plans)
        loss: torch.Tensor = self.loss_fn(out.float(), label)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"search loss is {loss.item()}; lower --lr or --arch-lr")
        return loss

    def cost_penalty(self) -> torch.Tensor | None:
        """The cost-aware term of the architecture loss (``None`` without a budget)."""
        if self.config.cost is None:
            return None
        return self.config.cost.penalty(self.expected_cost())

    def expected_cost(self) -> dict[str, torch.Tensor]:
        """Expected params, FLOPs and activation bytes of the sampled child (differentiable)."""
        return expected_cost(
            self.model.logits(),
            self.model.space,
            self.patch,
            in_channels=self.channels[0],
            out_channels=self.channels[1],
            width=self.config.width,
            macro=self.model.macro_logits(),
        )

    def weights_step(self, batch: dict[str, Any]) -> float:
        """One update of the weights; returns the loss (averaged over ranks)."""
        self.w_opt.zero_grad(set_to_none=True)
        loss = self.seg_loss(batch)
        self.precision.backward(loss, inputs=self.weight_params)
        self.sync_gradients(self.weight_params)
        self.precision.step(self.w_opt, self.weight_params, self.config.grad_clip)
        return self.strategy.reduce(float(loss.detach()))

    def arch_step(self, batch: dict[str, Any]) -> float:
        """One update of the architecture logits; returns the segmentation loss (averaged over
        ranks)."""
        self.a_opt.zero_grad(set_to_none=True)
        surrogate, loss = self.estimator.surrogate(
            self.model, lambda plans: self.seg_loss(batch, plans), self.generator
        )
        penalty = self.cost_penalty()
        total = surrogate if penalty is None else surrogate + penalty
        if total.requires_grad:
            self.arch_precision.backward(total, inputs=self.arch_params)
        self.sync_gradients(self.arch_params)
        self.arch_precision.step(self.a_opt)
        self.decide_step()
        return self.strategy.reduce(loss)

    def decide_step(self) -> None:
        """Lower the entropy of the choices (:meth:`ArchEstimator.decide
        <nasmed.search.estimators.ArchEstimator.decide>`), decoupled from Adam like AdamW's
        decay, at this epoch's rate: the ramp of :meth:`SearchConfig.entropy_weight_at` over
        :attr:`SearchConfig.entropy_steps`, so the search decides late, but decides."""
        self.estimator.decide(self.model, self.entropy_weight / self.config.entropy_steps)

    # ---- the loop -------------------------------------------------------------------------

    def begin_epoch(self, epoch: int) -> tuple[bool, float, float]:
        """Set the epoch's temperature, entropy weight and weights' learning rate, train mode;
        returns ``(searching, tau, lr)``."""
        c = self.config
        tau = c.tau(epoch)
        self.model.set_temperature(tau)
        self.entropy_weight = c.entropy_weight_at(epoch)
        lr = c.weight_lr_at(epoch)
        for group in self.w_opt.param_groups:
            group["lr"] = lr
        self.net.train()
        return epoch >= c.warmup_epochs, tau, lr

    def train_epoch(self, epoch: int, engine: Engine) -> dict[str, Any]:
        """One epoch; returns its history fields."""
        search, tau, lr = self.begin_epoch(epoch)
        if self.w_loader is None or self.a_loader is None:
            raise RuntimeError("this Searcher has no data (it was made with cache_dir=None)")
        for loader in (self.w_loader, self.a_loader):
            loader.dataset.set_epoch(epoch)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        losses_w: list[float] = []
        losses_a: list[float] = []
        arch_batches = iter(self.a_loader) if search else None
        for batch in self.w_loader:
            losses_w.append(self.weights_step(batch))
            if arch_batches is not None:
                losses_a.append(self.arch_step(next(arch_batches)))
            engine.bar.step(
                epoch=epoch + 1,
                loss_w=f"{losses_w[-1]:.3f}",
                **({"loss_a": f"{losses_a[-1]:.3f}"} if losses_a else {}),
            )
        seconds = time.perf_counter() - start
        with torch.no_grad():
            cost = self.expected_cost()
        row: dict[str, Any] = {
            "epoch": epoch,
            "phase": "search" if search else "warmup",
            "loss_w": sum(losses_w) / len(losses_w),
            "loss_a": sum(losses_a) / len(losses_a) if losses_a else None,
            "tau": tau,
            "entropy_weight": self.entropy_weight,
            "lr_w": lr,
            **entropy_fields(self.model),
            "exp_params": float(cost["params"]),
            "exp_gflops": float(cost["flops"]) / 1e9,
            "exp_act_mb": float(cost["act_bytes"]) / 2**20,
            "seconds": round(seconds, 3),
            "peak_memory_mb": round(peak_memory_mb(self.device), 1),
        }
        return row

    def argmax_genotype(self, **kw: Any) -> Genotype:
        """The most likely architecture under the current logits."""
        return decode(self.model.arch_logits(), self.model.space, **kw)

    def validate(self, epoch: int) -> dict[str, float]:
        """Dice of the argmax architecture (every rank takes part; the cases are split)."""
        assert self.validate_fn is not None
        child = ArgmaxChild(self.model, self.argmax_genotype()).eval()
        with torch.no_grad(), self.precision.autocast():
            scores = self.validate_fn(child)
        out = {"val_dice": float(scores["dice"])}
        for k, v in scores.get("per_class", {}).items():
            out[f"val_dice_{k}"] = float(v)
        return out

    def snapshot(self, epoch: int, tau: float) -> Path:
        """Write ``alphas/epoch_XXXX.json``: the architecture logits after ``epoch``."""
        path = self.run_dir / "alphas" / f"epoch_{epoch:04d}.json"
        write_snapshot(path, self.model, epoch, tau)
        return path

    # ---- the task of the engine -----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The task's part of ``checkpoint.pt``: supernet, both optimisers, the estimator."""
        return {
            "model": self.model.state_dict(),
            "weight_optimizer": self.w_opt.state_dict(),
            "arch_optimizer": self.a_opt.state_dict(),
            "scaler": self.precision.state_dict(),
            "arch_scaler": self.arch_precision.state_dict(),
            "estimator": self.estimator.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["weight_optimizer"])
        self.a_opt.load_state_dict(state["arch_optimizer"])
        self.precision.load_state_dict(state.get("scaler") or {})
        self.arch_precision.load_state_dict(state.get("arch_scaler") or {})
        self.estimator.load_state_dict(state.get("estimator") or {})

    def weights(self) -> dict[str, torch.Tensor]:
        """The supernet's weights."""
        return self.model.state_dict()

    def generators(self) -> dict[str, torch.Generator]:
        """The Gumbel noise's generator."""
        return {"gumbel": self.generator}

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """Rank 0 writes the epoch's logit snapshot."""
        if is_main():
            self.snapshot(epoch, row["tau"])

    def describe(self, epoch: int, row: dict[str, Any]) -> str:
        """The epoch's log line."""
        loss_a = f", loss_a {row['loss_a']:.4f}" if row["loss_a"] is not None else ""
        dice = f", val Dice {row['val_dice']:.4f}" if "val_dice" in row else ""
        return (
            f"({row['phase']}) loss_w {row['loss_w']:.4f}{loss_a}, tau {row['tau']:.3g}{dice} "
            f"({row['seconds']:.1f} s)"
        )

    def resume(self) -> bool:
        """Load ``checkpoint.pt`` if there is one; returns whether it did."""
        return self.engine.resume()

    def fit(self, *, resume: bool = False) -> float | None:
        """Search from the start (or from ``checkpoint.pt`` when ``resume``).

        Returns:
            The last validation Dice of the argmax architecture (``None`` if never validated).
        """
        self.engine.fit(resume=resume)
        return self.last_dice
