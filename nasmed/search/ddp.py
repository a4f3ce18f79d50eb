"""Data-parallel search under ``torchrun``: each rank searches on its share of every batch.

The search's strategy is :class:`~nasmed.engine.strategy.DataParallel`, as training's, but the
supernet is not wrapped in torch's DDP: a search step back-propagates into a subset of the
parameters (the weights, or the architecture logits) of one sampled child, which DDP's reducer
cannot follow. Instead every rank starts from rank 0's weights
(:meth:`~nasmed.engine.strategy.Strategy.prepare_shared`) and draws the same Gumbel noise (one
generator, same seed), so all ranks sample the same child each step; after each backward the
gradients of the updated parameters are averaged over ranks
(:meth:`~nasmed.engine.strategy.Strategy.sync_gradients`), so weights and architecture logits
stay identical everywhere. Patches are sharded like the trainer's
(:class:`~nasmed.pipeline.ddp.RankBatches`): the ranks together see exactly the batches of a
one-process search with the same global batch, and the batch Dice is taken over the global batch
(:class:`~nasmed.engine.ddp_loss.GlobalBatchDiceCELoss`). Validation cases are split over the
ranks and gathered; rank 0 writes.

The update equals the one-process update computed on the ranks' parts of the batch (measured:
7e-7 relative). It is not bit-for-bit the update of one forward over the whole batch: float kernels
depend on the batch size, and a small supernet at a small patch (instance norm over a few
voxels at the bottom level) amplifies those 1e-5 differences to 1% in its gradients, and Adam's
normalised steps amplify them again in the logits, so a short search may decode another argmax
architecture.
"""

from __future__ import annotations

from typing import Any

from nasmed.engine.strategy import DataParallel
from nasmed.search.config import SearchConfig
from nasmed.search.searcher import Searcher
from nasmed.supernet import Supernet

__all__ = ["make_searcher"]


def make_searcher(supernet: Supernet, config: SearchConfig, **kwargs: Any) -> Searcher:
    """The searcher of a run, with the :class:`~nasmed.engine.strategy.DataParallel` strategy
    (a plain single-process search when alone).

    Args:
        supernet: the supernet.
        config: the search settings.
        **kwargs: the other :class:`~nasmed.search.searcher.Searcher` arguments.

    Raises:
        ConfigError: the global batch does not split evenly over the ranks.
    """
    return Searcher(supernet, config, strategy=DataParallel(), **kwargs)
