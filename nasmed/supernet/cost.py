"""Costs from the operations' declarations: of one architecture, and expected under sampling.

Every declared cost is the sum of declared costs (``nasmed.ops``), nothing is run: parameters,
FLOPs of one forward pass, and bytes of activations kept for the backward pass (float32, batch
1). The activation figure is an estimate to compare architectures and to budget the search, not
a prediction of a process's peak memory. Deep-supervision heads are not counted. In a
pre-activation space the shared norm of a source node is counted when one of its kept edges runs
a non-raw op (exact for one architecture; the expected cost counts every source, an upper bound).

*Measured* latency (``latency_s``: seconds of one forward + backward pass at batch
``PROFILE_BATCH`` (2, nnU-Net's batch), on the device of the logits) comes from
:mod:`nasmed.ops.profile`: every candidate op timed at each level's shape and channels, plus the
fixed part (stem, entries, projections, heads) timed as the network with every edge zero. It is
the sum of those, so it ignores the overlap and overheads of a whole network; it ranks
architectures by time where FLOPs do not. The batch matters beyond proportion: on this project's
CPU a 3x3x3 conv at 32^3, 16 channels takes longer at batch 1 than at batch 2 (oneDNN picks
another backward kernel), so profiles are keyed by batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nasmed.genotype import Genotype, check_space
from nasmed.ops import op_class, op_cost
from nasmed.ops.profile import Measure, ProfileCache, device_key, measure, measure_op
from nasmed.supernet.cell import preact_block, preact_cost
from nasmed.supernet.network import CellNetwork, fixed_cost
from nasmed.supernet.plans import kept_probabilities
from searchspaces import SearchSpace

__all__ = [
    "PROFILE_BATCH",
    "Cost",
    "LatencyTable",
    "architecture_cost",
    "architecture_latency",
    "expected_cost",
    "latency_table",
    "level_voxels",
    "param_range",
]


#: Batch of the latency profiles (nnU-Net's and ``nasmed search``'s default).
PROFILE_BATCH = 2


@dataclass(frozen=True)
class Cost:
    """Parameters, FLOPs per forward pass, activation bytes (batch 1)."""

    params: int
    flops: float
    act_bytes: float


def level_voxels(space: SearchSpace, patch: Sequence[int]) -> list[float]:
    """Voxels at levels ``0..levels``, then the input's (after checking the patch fits)."""
    sides = space.check_patch(patch)
    full = float(math.prod(sides))
    dims = len(sides)
    out = [full / (space.stem_stride * 2**level) ** dims for level in range(space.levels + 1)]
    return [*out, full]


def _op_table(
    space: SearchSpace, width: float, dims: int
) -> list[dict[str, tuple[int, float, float]]]:
    """Per level, per op: (params, flops per voxel, act bytes per voxel)."""
    out = []
    for c in space.channels(width):
        row = {}
        for op in space.ops:
            cost = op_cost(op, dims, in_channels=c, out_channels=c, normed=not space.preact)
            row[op] = (cost.params, cost.flops, cost.act_bytes)
        out.append(row)
    return out


def _preact_sources(genotype: Genotype, key: str) -> set[int]:
    """Sources of ``key``'s cell whose shared norm runs (a kept edge with a non-raw op)."""
    return {
        source
        for (source, _node), op in genotype.cell(key).edges().items()
        if not getattr(op_class(op), "raw_input", False)
    }


def architecture_cost(
    genotype: Genotype,
    space: SearchSpace,
    in_channels: int,
    out_channels: int,
    patch: Sequence[int],
    *,
    width: float = 1.0,
) -> Cost:
    """Declared cost of the derived network of ``genotype`` at ``patch`` (2 or 3 sides)."""
    check_space(genotype, space)
    voxels = level_voxels(space, patch)
    dims = len(patch)
    params, flops, act = fixed_cost(
        space, in_channels, out_channels, voxels, width=width, spatial_dims=dims
    )
    table = _op_table(space, width, dims)
    channels = space.channels(width)
    for layer in space.layers():
        n = voxels[layer.level]
        for edge_op in genotype.cell(layer.key).edges().values():
            p, f, a = table[layer.level][edge_op]
            params += p
            flops += f * n
            act += a * n
        if space.preact:
            norm = preact_cost(channels[layer.level])
            count = len(_preact_sources(genotype, layer.key))
            params += count * norm.params
            flops += count * norm.flops * n
            act += count * norm.act_bytes * n
    return Cost(int(params), float(flops), float(act))


def param_range(
    space: SearchSpace,
    in_channels: int,
    out_channels: int,
    *,
    width: float = 1.0,
    spatial_dims: int = 3,
) -> tuple[int, int]:
    """Fewest and most parameters over the architectures of ``space``."""
    voxels = [1.0] * (space.levels + 2)
    fixed = fixed_cost(
        space, in_channels, out_channels, voxels, width=width, spatial_dims=spatial_dims
    )[0]
    table = _op_table(space, width, spatial_dims)
    edges = sum(space.kept(i) for i in range(1, space.nodes + 1))
    low = high = fixed
    channels = space.channels(width)
    for layer in space.layers():
        counts = [p for p, _, _ in table[layer.level].values()]
        low += edges * min(counts)
        high += edges * max(counts)
        if space.preact:  # every source's norm (low: identity and zero edges need none)
            high += space.nodes * preact_cost(channels[layer.level]).params
    return int(low), int(high)


def expected_cost(
    logits: Mapping[str, Mapping[str, torch.Tensor]],
    space: SearchSpace,
    patch: Sequence[int],
    *,
    in_channels: int = 1,
    out_channels: int = 2,
    width: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Expected cost of the sampled child under the current sampling distribution.

    Differentiable in ``logits`` (``Supernet.logits()``): each edge's op costs are averaged with
    ``softmax(ops)`` and weighted by the probability the edge is kept. The temperature does not
    enter (it only sharpens the samples, not their distribution).

    Returns:
        ``{"params": ..., "flops": ..., "act_bytes": ...}`` scalar tensors. ``"latency_s"``
        (expected measured seconds, :func:`latency_table` on the logits' device) is computed
        when first read, so a search that never budgets latency never measures anything.
    """
    voxels = level_voxels(space, patch)
    dims = len(patch)
    params, flops, act = fixed_cost(
        space, in_channels, out_channels, voxels, width=width, spatial_dims=dims
    )
    table = _op_table(space, width, dims)
    some = next(iter(logits.values()))["ops"]
    total = {
        "params": some.new_tensor(float(params)),
        "flops": some.new_tensor(flops),
        "act_bytes": some.new_tensor(act),
    }
    expected = {}
    for key in space.arch_keys():
        alpha = torch.softmax(logits[key]["ops"], dim=-1)
        keep = kept_probabilities(logits[key]["inputs"], space)
        expected[key] = keep @ alpha  # (n_ops,): expected number of kept edges running each op
    channels = space.channels(width)
    for layer in space.layers():
        n = voxels[layer.level]
        costs = torch.tensor(
            [table[layer.level][op] for op in space.ops], dtype=some.dtype, device=some.device
        )
        e = expected[layer.key] @ costs
        total["params"] = total["params"] + e[0]
        total["flops"] = total["flops"] + e[1] * n
        total["act_bytes"] = total["act_bytes"] + e[2] * n
        if space.preact:
            norm = preact_cost(channels[layer.level])
            total["params"] = total["params"] + space.nodes * norm.params
            total["flops"] = total["flops"] + space.nodes * norm.flops * n
            total["act_bytes"] = total["act_bytes"] + space.nodes * norm.act_bytes * n

    def latency() -> torch.Tensor:
        lat = latency_table(
            space,
            patch,
            in_channels=in_channels,
            out_channels=out_channels,
            width=width,
            device=some.device,
        )
        assert lat is not None  # measured when missing
        value = some.new_tensor(lat.fixed_s)
        for layer in space.layers():
            row = torch.tensor(
                [lat.ops[layer.level][op] for op in space.ops],
                dtype=some.dtype,
                device=some.device,
            )
            value = value + expected[layer.key] @ row + space.nodes * lat.preact[layer.level]
        return value

    return _LazyCosts(total, latency_s=latency)


class _LazyCosts(dict[str, torch.Tensor]):
    """A dict of costs whose listed extra keys are computed when first read."""

    def __init__(self, values: Mapping[str, torch.Tensor], **lazy: Any) -> None:
        super().__init__(values)
        self._lazy = lazy

    def __missing__(self, key: str) -> torch.Tensor:
        if key not in self._lazy:
            raise KeyError(key)
        value: torch.Tensor = self._lazy.pop(key)()
        self[key] = value
        return value


@dataclass(frozen=True)
class LatencyTable:
    """Measured seconds (forward + backward at one batch) of a space's parts at one patch.

    Attributes:
        device: the profile's device key (:func:`~nasmed.ops.profile.device_key`).
        fixed_s: the network with every edge zero (stem, entries, projections, heads).
        ops: per level, per op: one edge running the op at that level's shape.
        preact: per level: one shared norm -> act (0 without ``preact``).
        saved_bytes: per level, per op: bytes autograd saved for the backward pass.
    """

    device: str
    fixed_s: float
    ops: tuple[dict[str, float], ...]
    preact: tuple[float, ...]
    saved_bytes: tuple[dict[str, float], ...]


def latency_table(
    space: SearchSpace,
    patch: Sequence[int],
    *,
    in_channels: int = 1,
    out_channels: int = 2,
    width: float = 1.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cache: str | None = None,
    repeats: int = 3,
    batch: int = PROFILE_BATCH,
    measure_missing: bool = True,
) -> LatencyTable | None:
    """Measure (or read from the profile cache) every candidate op at every level's shape.

    Args:
        space: the space (its ops, channels, norm and ``preact``).
        patch: the input patch (checked against the space).
        in_channels: image channels (for the fixed part).
        out_channels: classes (for the fixed part).
        width: channel multiplier.
        device: where to measure.
        dtype: the dtype measured.
        cache: the cache folder (default ``$NASMED_CACHE`` or ``~/.cache/nasmed``).
        repeats: timed passes per measurement (the median is kept).
        batch: the batch measured.
        measure_missing: ``False``: only read the cache; ``None`` if something is missing.
    """
    key = (
        space,
        tuple(space.check_patch(patch)),
        in_channels,
        out_channels,
        float(width),
        str(torch.device(device)),
        dtype,
        cache,
        repeats,
        batch,
    )
    if not measure_missing:  # not through the in-process cache: a miss must not stick
        try:
            return _latency_table.__wrapped__(*key, False)
        except _Missing:
            return None
    return _latency_table(*key)


class _Missing(LookupError):
    """A measurement is not in the cache (and was not to be made)."""


@functools.lru_cache(maxsize=32)
def _latency_table(
    space: SearchSpace,
    patch: tuple[int, ...],
    in_channels: int,
    out_channels: int,
    width: float,
    device: str,
    dtype: torch.dtype,
    cache: str | None,
    repeats: int,
    batch: int,
    measure_missing: bool = True,
) -> LatencyTable:
    dims = len(patch)
    store = ProfileCache(device_key(device, dtype), cache)

    def get(name: str, make: Callable[[], Measure]) -> Measure:
        m = store.get(name, make if measure_missing else None)
        if m is None:
            raise _Missing(name)
        return m

    top = space.stem_stride
    ops, pre, saved = [], [], []
    bare = space.preact
    for level, c in enumerate(space.channels(width)):
        size = tuple(p // (top * 2**level) for p in patch)
        shape = "x".join(map(str, size))
        row, mem = {}, {}
        for op in space.ops:
            if getattr(op_class(op), "is_zero", False):
                row[op], mem[op] = 0.0, 0.0
                continue
            form = "bare" if bare else f"{space.norm}/{space.act}"
            name = f"op {op} {form} c{c} b{batch} {shape}"
            m = get(
                name,
                functools.partial(
                    measure_op,
                    op,
                    dims,
                    c,
                    size,
                    batch=batch,
                    bare=bare,
                    norm=space.norm,
                    act=space.act,
                    device=device,
                    dtype=dtype,
                    repeats=repeats,
                ),
            )
            row[op], mem[op] = m.seconds, m.saved_bytes
        ops.append(row)
        saved.append(mem)
        if space.preact:
            name = f"preact {space.norm}/{space.act} c{c} b{batch} {shape}"
            block = preact_block(dims, c, space.norm, space.act)
            m = get(
                name,
                functools.partial(
                    measure, block, (batch, c, *size), device=device, dtype=dtype, repeats=repeats
                ),
            )
            pre.append(m.seconds)
        else:
            pre.append(0.0)
    name = (
        f"fixed {space.content_hash()[:16]} {'x'.join(map(str, patch))} "
        f"in{in_channels} out{out_channels} w{width:g} b{batch}"
    )

    def fixed() -> Measure:
        net = CellNetwork(
            space, in_channels, out_channels, lambda _l: {}, width=width, spatial_dims=dims
        )
        plans = {key: ((),) * space.nodes for key in space.arch_keys()}
        return measure(
            net,
            (batch, in_channels, *patch),
            device=device,
            dtype=dtype,
            repeats=repeats,
            forward=lambda m, x: m.forward_plans(x, plans),  # type: ignore[operator]
        )

    m = get(name, fixed)
    store.save()
    return LatencyTable(store.key, m.seconds, tuple(ops), tuple(pre), tuple(saved))


def architecture_latency(genotype: Genotype, space: SearchSpace, table: LatencyTable) -> float:
    """Measured seconds of ``genotype``'s network: fixed part + its ops + its shared norms."""
    check_space(genotype, space)
    total = table.fixed_s
    for layer in space.layers():
        for op in genotype.cell(layer.key).edges().values():
            total += table.ops[layer.level][op]
        if space.preact:
            total += len(_preact_sources(genotype, layer.key)) * table.preact[layer.level]
    return total
