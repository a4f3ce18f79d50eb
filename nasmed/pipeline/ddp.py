"""Data-parallel training under ``torchrun``: the DDP strategy's pieces, named for the pipeline.

``torchrun --nproc_per_node N -m nasmed train ...`` starts N processes; each joins the process
group (:func:`nasmed.distributed.init_distributed`), and the trainer's
:class:`~nasmed.engine.strategy.DataParallel` strategy wraps the network in DDP (gradients
averaged in backward) and draws each rank's share of the patches. Patch ``i`` of an epoch
depends only on ``(seed, epoch, i)`` (:class:`decathlon.sampling.PatchDataset`), so rank ``r`` of
``N`` takes items ``b*B + r*B/N ... b*B + (r+1)*B/N - 1`` of global batch ``b``
(:data:`RankBatches`): the N ranks together train exactly the batches one process would with
``--batch B``. The loss is nnU-Net's batch Dice over the global batch
(:class:`~nasmed.engine.ddp_loss.GlobalBatchDiceCELoss`) + CE, so the averaged gradient is the
single process' gradient up to float rounding. Validation cases are split over the ranks and
their scores gathered; only rank 0 writes. The checkpoint records the world size, and resuming
with another one is a :class:`~nasmed.errors.RunDirError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from decathlon.sampling import BatchShards, PatchLoader, PatchTransform, make_loader
from nasmed.engine.strategy import DataParallel, check_world_size, local_batch

__all__ = ["DataParallel", "RankBatches", "check_world_size", "local_batch", "make_rank_loader"]

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
