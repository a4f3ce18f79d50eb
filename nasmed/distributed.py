"""Data-parallel runs under ``torchrun``: rank queries, process-group set-up, rank-0-only output.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op for a
single process, so the same code runs alone and in DDP. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_mean",
    "barrier",
    "cleanup_distributed",
    "init_distributed",
    "is_distributed",
    "is_main",
    "rank",
    "world_size",
]

log = logging.getLogger(__name__)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process' global rank (0 when alone)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when alone)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on the process that writes outputs (rank 0)."""
    return rank() == 0


def init_distributed(device: torch.device) -> bool:
    """Join the process group described by torchrun's environment, if any.

    Args:
        device: this process' device; CUDA selects NCCL and ``LOCAL_RANK``'s GPU, CPU gloo.

    Returns:
        True when running distributed (``WORLD_SIZE`` > 1).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if dist.is_initialized():
        return True
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    log.info("rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def cleanup_distributed() -> None:
    """Leave the process group (no-op when alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op when alone)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over ranks (returned unchanged when alone)."""
    if not is_distributed():
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()
