"""Data-parallel training under ``torchrun``: each rank trains its share of the global batch.

``torchrun --nproc_per_node N -m nasmed train ...`` starts N processes; each joins the process
group (:func:`nasmed.distributed.init_distributed`), wraps the network in DDP (gradients averaged
in backward) and draws its own patches. Patch ``i`` of an epoch depends only on
``(seed, epoch, i)`` (:class:`decathlon.sampling.PatchDataset`), so rank ``r`` of ``N`` takes
items ``b*B + r*B/N ... b*B + (r+1)*B/N - 1`` of global batch ``b``: the N ranks together train
exactly the batches one process would with ``--batch B``. The loss is nnU-Net's batch Dice
over the global batch (:class:`~nasmed.pipeline.ddp_loss.GlobalBatchDiceCELoss`) + CE, so the
averaged gradient is the single process' gradient up to float rounding.

Only rank 0 writes (history, checkpoints, model). Every rank validates (MONAI's metrics
gather over ranks) and keeps rank 0's scores. The
checkpoint records the world size, and resuming with another one is a
:class:`~nasmed.errors.RunDirError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from decathlon.sampling import BatchShards, PatchLoader, PatchTransform, make_loader
from nasmed.distributed import (
    all_reduce_mean,
    broadcast_object,
    is_distributed,
    rank,
    world_size,
    wrap_ddp,
)
from nasmed.errors import ConfigError, RunDirError
from nasmed.pipeline.ddp_loss import GlobalBatchDiceCELoss
from nasmed.train.losses import DeepSupervisionLoss
from nasmed.train.trainer import TrainConfig, Trainer

__all__ = [
    "DistributedTrainer",
    "RankBatches",
    "check_world_size",
    "local_batch",
    "make_rank_loader",
]

log = logging.getLogger(__name__)


def local_batch(global_batch: int, world: int) -> int:
    """Patches per rank: ``global_batch / world``.

    Raises:
        ConfigError: the global batch does not split evenly over the ranks.
    """
    if global_batch % world:
        raise ConfigError(
            f"--batch {global_batch} is not a multiple of the {world} processes: each rank trains "
            f"batch/processes patches; use --batch {max(world, global_batch // world * world)}"
        )
    return global_batch // world


# Rank ``rank``'s part of global batch ``b``: the data layer's batch shards.
RankBatches = BatchShards


def make_rank_loader(
    cache_dir: str | os.PathLike[str],
    cases: Sequence[str],
    patch: Sequence[int],
    *,
    global_batch: int,
    steps_per_epoch: int,
    seed: int,
    rank: int,
    world: int,
    workers: int = 0,
    pin_memory: bool = False,
    transform: PatchTransform | None = None,
) -> PatchLoader:
    """Rank ``rank``'s patch loader: its share of the batches of
    :func:`decathlon.sampling.make_loader` with ``batch_size=global_batch`` (same patches).

    Raises:
        ConfigError: the global batch does not split evenly over the ranks.
    """
    local_batch(global_batch, world)
    return make_loader(
        cache_dir,
        list(cases),
        patch,
        batch_size=global_batch,
        workers=workers,
        samples_per_epoch=steps_per_epoch * global_batch,
        seed=seed,
        pin_memory=pin_memory,
        rank=rank,
        world=world,
        transform=transform,
    )


def check_world_size(state: dict[str, Any], world: int, checkpoint: Path) -> None:
    """Refuse to resume a checkpoint written by another number of processes.

    Raises:
        RunDirError: ``state["world_size"]`` (1 when absent) differs from ``world``.
    """
    saved = int(state.get("world_size", 1))
    if saved != world:
        how = (
            f"torchrun --nproc_per_node {saved} (or over nodes, {saved} processes in all)"
            if saved > 1
            else "a single process (no torchrun)"
        )
        raise RunDirError(
            f"{checkpoint}: the run was trained by {saved} process(es), this resume has "
            f"{world}; resume it with {how}"
        )


class DistributedTrainer(Trainer):
    """:class:`~nasmed.train.trainer.Trainer` under DDP; exactly a Trainer in one process.

    Takes the Trainer's arguments; ``config.batch_size`` is the global batch.

    Raises:
        ConfigError: the global batch does not split evenly over the ranks.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        cache_dir: str | Path,
        train_cases: Sequence[str],
        frozen: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        self.world = world_size()
        local_batch(config.batch_size, self.world)
        frozen = list(frozen)
        self._find_unused = bool(frozen)
        super().__init__(
            model, config, cache_dir=cache_dir, train_cases=train_cases, frozen=frozen, **kwargs
        )
        if self.world > 1:
            self.loss_fn = DeepSupervisionLoss(GlobalBatchDiceCELoss())
            self.loader = make_rank_loader(
                cache_dir,
                train_cases,
                self.patch,
                global_batch=config.batch_size,
                steps_per_epoch=config.steps_per_epoch,
                seed=config.seed,
                rank=rank(),
                world=self.world,
                workers=config.workers,
                pin_memory=self.device.type == "cuda",
                transform=self.transform,
            )
            log.info(
                "rank %d of %d: %d of %d patches per step",
                rank(),
                self.world,
                config.batch_size // self.world,
                config.batch_size,
            )

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """DDP around ``model`` when distributed (frozen layers: unused parameters allowed)."""
        return wrap_ddp(model, self.device, find_unused_parameters=self._find_unused)

    def train_step(self, batch: dict[str, Any]) -> float:
        """One step on this rank's share; returns the loss averaged over ranks."""
        loss = super().train_step(batch)
        if not is_distributed():
            return loss
        return float(all_reduce_mean(torch.tensor(loss, dtype=torch.float64)))

    def validate(self, epoch: int) -> dict[str, float] | None:
        """Every rank validates (MONAI's metrics gather over ranks, so all must take part);
        every rank then keeps rank 0's scores, so all agree on the best epoch."""
        scores = super().validate(epoch)
        shared: dict[str, float] | None = broadcast_object(scores)
        return shared

    def checkpoint_state(self, next_epoch: int) -> dict[str, Any]:
        """The Trainer's state plus the world size."""
        return {**super().checkpoint_state(next_epoch), "world_size": self.world}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Refuse a checkpoint written with another world size, then load it.

        Raises:
            RunDirError: the run was trained by another number of processes.
        """
        check_world_size(state, self.world, self.ckpt_dir / "last.pt")
        super().load_checkpoint_state(state)
