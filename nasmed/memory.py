"""Memory estimates of nasmed's stages, checked before anything is allocated.

One formula for every network (:func:`network_bytes`): the U-Net activation estimate of the
plan (:func:`decathlon.plan.estimate_memory_mb`: feature maps kept per voxel and level, base
32 channels times ``width``), for a training step, times the number of candidate operations a
mixed (DARTS) supernet runs on every edge; a forward pass without gradients keeps about a
quarter of it. :func:`check_network` compares it with what the device has
(:func:`decathlon.memory.check_memory`; ``NASMED_MEMORY_LIMIT`` overrides).
"""

from __future__ import annotations

from collections.abc import Sequence

from decathlon.memory import check_memory
from decathlon.plan import estimate_memory_mb

__all__ = ["check_network", "network_bytes"]

INFERENCE_SHARE = 0.25  # of a training step's activations, without the backward pass


def network_bytes(
    patch: Sequence[int],
    *,
    batch: int,
    in_channels: int = 1,
    num_classes: int = 2,
    width: float = 1.0,
    training: bool = True,
    ops_per_edge: int = 1,
) -> float:
    """Estimated bytes of one step on ``batch`` patches (see the module docs)."""
    p = tuple(int(s) for s in patch)
    mb = estimate_memory_mb(
        (p[0], p[1], p[2]),
        batch_size=batch,
        in_channels=in_channels,
        num_classes=num_classes,
        base_features=max(1, round(32 * width)),
        max_features=max(1, round(320 * width)),
    )
    share = 1.0 if training else INFERENCE_SHARE
    return mb * 2**20 * share * max(1, ops_per_edge)


def check_network(
    patch: Sequence[int],
    *,
    batch: int,
    device: str,
    what: str,
    hint: str = "use a smaller --patch or --batch",
    **kwargs: object,
) -> None:
    """Refuse a network step that cannot fit (``kwargs`` as for :func:`network_bytes`).

    Raises:
        MemoryTooSmallError: one line with the size it would need.
    """
    need = network_bytes(patch, batch=batch, **kwargs)  # type: ignore[arg-type]
    check_memory(need, what, hint, device=device)
