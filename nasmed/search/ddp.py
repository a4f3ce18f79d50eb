"""Data-parallel search under ``torchrun``: each rank searches on its share of every batch.

The supernet is not wrapped in torch's DDP: a search step back-propagates into a subset of the
parameters (the weights, or the architecture logits) of one sampled child, which DDP's reducer
cannot follow. Instead every rank starts from rank 0's weights and draws the same Gumbel noise
(one generator, same seed), so all ranks sample the same child each step; after each backward
the gradients of the updated parameters are averaged over ranks
(:func:`nasmed.distributed.all_reduce_gradients`, through :meth:`Searcher.sync_gradients`), so
weights and architecture logits stay identical everywhere. Patches are sharded like the
trainer's (:class:`~nasmed.pipeline.ddp.RankBatches`): the ranks together see exactly the
batches of a one-process search with the same global batch, and the batch Dice is taken over
the global batch (:class:`~nasmed.pipeline.ddp_loss.GlobalBatchDiceCELoss`). Every rank
validates (MONAI's metrics gather over ranks) and keeps rank 0's scores; rank 0 writes.

The update equals the one-process update computed on the ranks' parts of the batch (measured:
7e-7 relative). It is not bit-for-bit the update of one forward over the whole batch: float kernels
depend on the batch size, and a small supernet at a small patch (instance norm over a few
voxels at the bottom level) amplifies those 1e-5 differences to 1% in its gradients, and Adam's
normalised steps amplify them again in the logits, so a short search may decode another argmax
architecture.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nasmed.distributed import (
    all_reduce_gradients,
    all_reduce_mean,
    broadcast_module,
    broadcast_object,
    is_distributed,
    rank,
    world_size,
)
from nasmed.pipeline.ddp import check_world_size, local_batch, make_rank_loader
from nasmed.pipeline.ddp_loss import GlobalBatchDiceCELoss
from nasmed.search.config import SearchConfig
from nasmed.search.searcher import CHECKPOINT_FILE, Searcher
from nasmed.supernet import Supernet

__all__ = ["DistributedSearcher", "make_searcher"]

log = logging.getLogger(__name__)


class DistributedSearcher(Searcher):
    """:class:`~nasmed.search.searcher.Searcher` over ranks; exactly a Searcher in one process.

    Takes the Searcher's arguments; ``config.batch_size`` is the global batch.

    Raises:
        ConfigError: the global batch does not split evenly over the ranks.
    """

    def __init__(
        self,
        supernet: Supernet,
        config: SearchConfig,
        *,
        cache_dir: str | Path,
        weight_cases: Sequence[str],
        arch_cases: Sequence[str],
        patch: tuple[int, int, int],
        **kwargs: Any,
    ) -> None:
        self.world = world_size()
        local_batch(config.batch_size, self.world)
        super().__init__(
            supernet,
            config,
            cache_dir=cache_dir,
            weight_cases=weight_cases,
            arch_cases=arch_cases,
            patch=patch,
            **kwargs,
        )
        if self.world > 1:
            self.loss_fn = GlobalBatchDiceCELoss()
            broadcast_module(self.model)
            self.w_loader, self.a_loader = (
                make_rank_loader(
                    cache_dir,
                    cases,
                    patch,
                    global_batch=config.batch_size,
                    steps_per_epoch=config.steps_per_epoch,
                    seed=config.seed + offset,
                    rank=rank(),
                    world=self.world,
                    workers=config.workers,
                    pin_memory=self.device.type == "cuda",
                )
                for offset, cases in enumerate((weight_cases, arch_cases))
            )

    def sync_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Average the gradients of ``params`` over ranks."""
        all_reduce_gradients(params)

    def _mean(self, loss: float) -> float:
        if not is_distributed():
            return loss
        return float(all_reduce_mean(torch.tensor(loss, dtype=torch.float64)))

    def weights_step(self, batch: dict[str, Any]) -> float:
        """One weights update on this rank's share; returns the loss averaged over ranks."""
        return self._mean(super().weights_step(batch))

    def arch_step(self, batch: dict[str, Any]) -> float:
        """One architecture update on this rank's share; returns the mean loss over ranks."""
        return self._mean(super().arch_step(batch))

    def validate(self, epoch: int) -> dict[str, float] | None:
        """Every rank validates (MONAI's metrics gather over ranks, so all must take part);
        every rank then keeps rank 0's scores, so all agree on the best epoch."""
        scores = super().validate(epoch)
        shared: dict[str, float] | None = broadcast_object(scores)
        return shared

    def checkpoint_state(self, next_epoch: int) -> dict[str, Any]:
        """The Searcher's state plus the world size."""
        return {**super().checkpoint_state(next_epoch), "world_size": self.world}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Refuse a checkpoint of another world size (:class:`RunDirError`), then load it."""
        check_world_size(state, self.world, self.run_dir / CHECKPOINT_FILE)
        super().load_checkpoint_state(state)


def make_searcher(supernet: Supernet, config: SearchConfig, **kwargs: Any) -> Searcher:
    """The searcher of a run: :class:`DistributedSearcher` (a plain Searcher when alone).

    Args:
        supernet: the supernet.
        config: the search settings.
        **kwargs: the other :class:`~nasmed.search.searcher.Searcher` arguments.
    """
    return DistributedSearcher(supernet, config, **kwargs)
