"""How a fit runs over processes and devices: a strategy object, not a subclass of the loop.

:class:`SingleProcess` is one process on one device. :class:`DataParallel` is torch DDP under
``torchrun``: each rank takes its share of every global batch (the loaders' ``rank``/``world``),
the batch Dice is taken over the global batch
(:class:`~nasmed.engine.ddp_loss.GlobalBatchDiceCELoss`), gradients are averaged over ranks (by
DDP's reducer, or :meth:`Strategy.sync_gradients` where a step updates a subset of parameters),
reported losses are averaged, validation cases are split over the ranks and their scores
gathered (:func:`nasmed.distributed.shard`), and checkpoints record the world size, so a resume
with another one is refused. A pipeline (torchgpipe) is a strategy too
(:class:`nasmed.pipeline.trainers.PipelineStrategy`). With one process, :class:`DataParallel`
is exactly :class:`SingleProcess`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasmed.distributed import (
    all_reduce_gradients,
    all_reduce_mean,
    broadcast_module,
    broadcast_object,
    is_distributed,
    rank,
    world_size,
    wrap_ddp,
)
from nasmed.engine.ddp_loss import GlobalBatchDiceCELoss
from nasmed.errors import ConfigError, RunDirError

__all__ = [
    "DataParallel",
    "SingleProcess",
    "Strategy",
    "check_world_size",
    "local_batch",
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


def check_world_size(state: Mapping[str, Any], world: int, checkpoint: Path) -> None:
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


class Strategy:
    """One process, one device (the base of every strategy)."""

    #: whether mixed precision may run (a pipeline's worker threads do not autocast)
    allows_amp = True

    @property
    def world(self) -> int:
        """Processes taking part."""
        return 1

    @property
    def rank(self) -> int:
        """This process' rank."""
        return 0

    def device(self, device: torch.device) -> torch.device:
        """Where the network's output and the loss live (``device`` unless a pipeline)."""
        return device

    def check_batch(self, global_batch: int) -> None:
        """Refuse a batch that does not split over the ranks (:class:`ConfigError`)."""
        local_batch(global_batch, self.world)

    def wrap(
        self, model: nn.Module, device: torch.device, *, find_unused: bool = False
    ) -> nn.Module:
        """The module that runs forward/backward (the model itself here)."""
        return model

    def prepare_shared(self, model: nn.Module) -> None:
        """Give every rank rank 0's weights where no wrapper does (a no-op alone)."""

    def batch_loss(self, local: nn.Module, *, batch_dice: bool = True) -> nn.Module:
        """The segmentation loss of a step: ``local``, or its global-batch form over ranks
        (``batch_dice``: ``local``'s Dice is one over the batch, not one per patch)."""
        return local

    def sync_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Average gradients of ``params`` over ranks (a no-op alone)."""

    def reduce(self, value: float) -> float:
        """``value`` averaged over ranks (itself alone)."""
        return value

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (so all agree on the best epoch)."""
        return obj

    def validation_net(self, model: nn.Module, net: nn.Module) -> nn.Module:
        """What validation runs: the plain network."""
        return model

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint records of the strategy."""
        return {"world_size": self.world}

    def check_state(self, state: Mapping[str, Any], path: Path) -> None:
        """Refuse a checkpoint this strategy cannot resume (:class:`RunDirError`)."""
        check_world_size(state, self.world, path)


class SingleProcess(Strategy):
    """One process, one device."""


class DataParallel(Strategy):
    """DDP under ``torchrun`` (exactly :class:`SingleProcess` when alone).

    Ranks are read from the process group (:func:`nasmed.distributed.init_distributed`).
    """

    @property
    def world(self) -> int:
        return world_size()

    @property
    def rank(self) -> int:
        return rank()

    def wrap(
        self, model: nn.Module, device: torch.device, *, find_unused: bool = False
    ) -> nn.Module:
        """DDP around ``model`` when distributed (gradients averaged in backward)."""
        return wrap_ddp(model, device, find_unused_parameters=find_unused)

    def prepare_shared(self, model: nn.Module) -> None:
        broadcast_module(model)

    def batch_loss(self, local: nn.Module, *, batch_dice: bool = True) -> nn.Module:
        """nnU-Net's batch Dice over the global batch + CE (``local`` when alone, or when its
        Dice is per patch: averaging the ranks' gradients then gives the global mean)."""
        return GlobalBatchDiceCELoss() if self.world > 1 and batch_dice else local

    def sync_gradients(self, params: Sequence[torch.Tensor]) -> None:
        all_reduce_gradients(params)

    def reduce(self, value: float) -> float:
        if not is_distributed():
            return value
        return float(all_reduce_mean(torch.tensor(value, dtype=torch.float64)))

    def share(self, obj: Any) -> Any:
        return broadcast_object(obj)
