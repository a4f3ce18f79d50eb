"""Data-parallel runs under ``torchrun``: rank queries, process-group set-up, rank-0-only output.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op for a
single process, so the same code runs alone and in DDP. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "all_reduce_gradients",
    "all_reduce_mean",
    "barrier",
    "broadcast_module",
    "broadcast_object",
    "cleanup_distributed",
    "gather_objects",
    "init_distributed",
    "is_distributed",
    "is_main",
    "rank",
    "run_on_main",
    "shard",
    "world_size",
    "wrap_ddp",
]

T = TypeVar("T")

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


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; ``obj`` itself when alone)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def run_on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank.

    For the steps that write (a run folder, a preprocessing cache): the other ranks wait, then
    read what rank 0 wrote. An exception on rank 0 is raised on every rank (a user error as
    itself, so every rank prints the same one line), so no rank waits forever.
    """
    if not is_distributed():
        return fn()
    result: Any = None
    error: BaseException | None = None
    if is_main():
        try:
            result = fn()
        except Exception as exc:  # handed to the other ranks, re-raised below
            error = exc
    try:
        shared = broadcast_object((result, error))
    except Exception:  # the result or the error does not pickle
        shared = broadcast_object((None, RuntimeError("rank 0 failed")))
    if error is not None:
        raise error
    if shared[1] is not None:
        raise shared[1]
    return shared[0]


def wrap_ddp(
    model: nn.Module, device: torch.device, *, find_unused_parameters: bool = False
) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (itself when alone).

    Gradients are averaged over ranks in backward; rank 0's weights are broadcast at the start.

    Args:
        model: the network, already on ``device``.
        device: this rank's device (its CUDA index is DDP's ``device_ids``).
        find_unused_parameters: needed when some parameters get no gradient (frozen layers).
    """
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = None
    if device.type == "cuda":
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    return DistributedDataParallel(
        model,
        device_ids=ids,
        find_unused_parameters=find_unused_parameters,
    )


def all_reduce_gradients(params: Iterable[torch.Tensor]) -> None:
    """Average the gradients of ``params`` over ranks, in place (no-op when alone).

    Only parameters that have a gradient take part, in one flat all-reduce; every rank must hold
    gradients for the same parameters (true when all ranks run the same sampled child).
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (no-op alone)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (every ``world``-th, from its rank); all of them alone."""
    return list(items)[rank() :: world_size()]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` alone); every rank must call it."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
