"""Balance a pipeline: profile each layer's cost, then cut the sequence into even partitions.

torchgpipe's own balancers do not serve here (``balance_by_time`` breaks on skippable layers,
``balance_by_size`` needs CUDA), so nasmed profiles the flat sequence itself, one layer at a
time, on a sample micro-batch:

- **time**: forward + backward seconds of the layer (the fastest of ``repeats`` passes);
- **memory**: ``3 x`` parameter bytes (weights, gradients, one optimizer state) plus the
  activation bytes the layer keeps for backward (the tensors autograd saves, found with
  saved-tensor hooks, and its output; its input belongs to the layer before).

A layer's cost is its share of the total time, of the total memory, or the mean of both shares
(``mixed``, the default). :func:`partition` then splits the costs into contiguous partitions
minimising the largest partition's cost, exactly (dynamic programming).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn
from torchgpipe.skip.tracker import SkipTracker, use_skip_tracker

from nasmed.errors import ConfigError

__all__ = [
    "BalanceBy",
    "LayerCost",
    "format_balance",
    "layer_weights",
    "partition",
    "partition_costs",
    "profile_layers",
]

log = logging.getLogger(__name__)

#: Bytes per parameter byte kept while training: weights, gradients, one optimizer state.
PARAM_COPIES = 3


class BalanceBy(str, Enum):
    """Which per-layer cost the automatic balance evens out."""

    TIME = "time"
    MEMORY = "memory"
    MIXED = "mixed"  # mean of the time share and the memory share


@dataclass(frozen=True)
class LayerCost:
    """The profiled cost of one layer of the sequence.

    Attributes:
        name: the layer's name in the sequence.
        seconds: forward + backward time on the sample.
        param_bytes: bytes of its parameters.
        activation_bytes: bytes it keeps for backward (saved tensors and output).
    """

    name: str
    seconds: float
    param_bytes: int
    activation_bytes: int

    @property
    def memory_bytes(self) -> int:
        """Training memory: ``PARAM_COPIES`` x parameters + activations."""
        return PARAM_COPIES * self.param_bytes + self.activation_bytes


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def _tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


class _Recorder:
    """A saved-tensor hook noting the bytes of every storage saved for backward."""

    def __init__(self, saved: dict[tuple[int, int], int], skip: set[tuple[int, int]]) -> None:
        self.saved = saved
        self.skip = skip

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self.skip:
            self.saved[key] = key[1]
        return t


def _profile_pass(seq: nn.Sequential, sample: torch.Tensor) -> list[tuple[float, int]]:
    """One pass over the layers: per layer ``(seconds, activation bytes)``."""
    param_keys = {_storage_key(p) for p in seq.parameters()}
    results: list[tuple[float, int]] = []
    x: object = sample
    with use_skip_tracker(SkipTracker()):
        for layer in seq:
            inputs = [t.detach().requires_grad_(t.is_floating_point()) for t in _tensors(x)]
            x_in: object = inputs[0] if isinstance(x, torch.Tensor) else tuple(inputs)
            input_keys = {_storage_key(t) for t in inputs}
            saved: dict[tuple[int, int], int] = {}
            pack = _Recorder(saved, param_keys | input_keys)
            start = time.perf_counter()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                y = layer(x_in)
            outs = [t for t in _tensors(y) if t.requires_grad]
            if outs:
                torch.autograd.backward(outs, [torch.ones_like(t) for t in outs])
            seconds = time.perf_counter() - start
            for t in _tensors(y):
                key = _storage_key(t)
                if key not in input_keys:
                    saved[key] = key[1]
            results.append((seconds, sum(saved.values())))
            x = tuple(t.detach() for t in y) if isinstance(y, tuple) else y.detach()
    return results


def profile_layers(
    seq: nn.Sequential, sample: torch.Tensor, *, repeats: int = 2
) -> list[LayerCost]:
    """Profile every layer of ``seq`` on ``sample`` (a micro-batch on the layers' device).

    Runs the layers in training mode one at a time, forward and backward; leaves no gradients
    and restores every buffer (e.g. batch-norm statistics) and the training mode afterwards.

    Args:
        seq: the flat sequence (:func:`~nasmed.pipeline.sequential.to_sequential`).
        sample: an input micro-batch.
        repeats: passes to time; each layer keeps its fastest.
    """
    was_training = seq.training
    buffers = {name: b.detach().clone() for name, b in seq.named_buffers()}
    grads = {p: p.grad for p in seq.parameters()}
    seq.train()
    try:
        passes = [_profile_pass(seq, sample) for _ in range(max(1, repeats))]
    finally:
        with torch.no_grad():
            for name, b in seq.named_buffers():
                b.copy_(buffers[name])
        for p, g in grads.items():
            p.grad = g
        seq.train(was_training)
    costs = []
    for index, (name, layer) in enumerate(seq.named_children()):
        param_bytes = sum(p.numel() * p.element_size() for p in layer.parameters())
        costs.append(
            LayerCost(
                name=name,
                seconds=min(run[index][0] for run in passes),
                param_bytes=param_bytes,
                activation_bytes=max(run[index][1] for run in passes),
            )
        )
    log.debug("profiled %d layers on %s", len(costs), tuple(sample.shape))
    return costs


def layer_weights(costs: Sequence[LayerCost], by: BalanceBy | str = BalanceBy.MIXED) -> list[float]:
    """Each layer's share of the total cost (the shares sum to 1)."""
    by = BalanceBy(by)
    times = [c.seconds for c in costs]
    memory = [float(c.memory_bytes) for c in costs]

    def share(values: list[float]) -> list[float]:
        total = sum(values)
        return [v / total if total > 0 else 1.0 / len(values) for v in values]

    if by is BalanceBy.TIME:
        return share(times)
    if by is BalanceBy.MEMORY:
        return share(memory)
    return [(a + b) / 2 for a, b in zip(share(times), share(memory))]


def partition(costs: Sequence[float], parts: int) -> list[int]:
    """Split ``costs`` into ``parts`` contiguous non-empty runs minimising the largest run's sum.

    Exact dynamic programming, ``O(parts * n^2)``. Among optimal splits it returns the one whose
    cuts come earliest.

    Returns:
        The balance: the number of layers of each partition (sums to ``len(costs)``).

    Raises:
        ConfigError: fewer layers than partitions, or no partitions.
    """
    n = len(costs)
    if parts < 1:
        raise ConfigError(f"balance: need at least 1 partition, got {parts}")
    if parts > n:
        raise ConfigError(
            f"balance: {parts} partitions but the network has only {n} layers; use at most {n} "
            "devices"
        )
    if any(c < 0 for c in costs):
        raise ValueError("layer costs must be >= 0")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + float(c))
    inf = float("inf")
    # best[j][i]: the smallest largest-run sum splitting the first i layers into j runs
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0.0
    for j in range(1, parts + 1):
        for i in range(j, n - (parts - j) + 1):
            for p in range(j - 1, i):
                value = max(best[j - 1][p], prefix[i] - prefix[p])
                if value < best[j][i]:
                    best[j][i], cut[j][i] = value, p
    balance: list[int] = []
    i = n
    for j in range(parts, 0, -1):
        p = cut[j][i]
        balance.append(i - p)
        i = p
    return balance[::-1]


def partition_costs(costs: Sequence[float], balance: Sequence[int]) -> list[float]:
    """The summed cost of each partition of ``balance``."""
    out, start = [], 0
    for size in balance:
        out.append(float(sum(costs[start : start + size])))
        start += size
    return out


def format_balance(
    balance: Sequence[int],
    costs: Sequence[LayerCost] | None = None,
    devices: Sequence[str] | None = None,
    *,
    names: Sequence[str] | None = None,
) -> str:
    """A text table of the partitions: device, layers and (when profiled) estimated cost.

    Args:
        balance: layers per partition.
        costs: the layers' profile (adds columns: milliseconds, weights MB counting
            ``PARAM_COPIES`` copies, activation MB, and the share of the balanced cost).
        devices: each partition's device.
        names: layer names (default: from ``costs``).
    """
    if names is None and costs is not None:
        names = [c.name for c in costs]
    spans, start = [], 0
    for size in balance:
        end = start + size
        if names is not None:
            span = names[start] if size == 1 else f"{names[start]} .. {names[end - 1]}"
        else:
            span = f"{start} .. {end - 1}"
        spans.append(f"{span} ({size})")
        start = end
    width = max(len("layers"), *(len(s) for s in spans))
    header = f"{'part':>4}  {'device':<8} {'layers':<{width}}"
    if costs is not None:
        header += f" {'ms':>9} {'weights MB':>10} {'activ. MB':>9} {'share':>6}"
        shares = partition_costs(layer_weights(costs), balance)
    lines = [header]
    start = 0
    for j, size in enumerate(balance):
        end = start + size
        device = devices[j] if devices is not None and j < len(devices) else "-"
        line = f"{j:>4}  {device:<8} {spans[j]:<{width}}"
        if costs is not None:
            part = costs[start:end]
            ms = 1e3 * sum(c.seconds for c in part)
            weights = sum(PARAM_COPIES * c.param_bytes for c in part) / 2**20
            act = sum(c.activation_bytes for c in part) / 2**20
            line += f" {ms:>9.1f} {weights:>10.1f} {act:>9.1f} {shares[j]:>6.1%}"
        lines.append(line)
        start = end
    return "\n".join(lines)
