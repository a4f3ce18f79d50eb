"""Measured latency of a space's parts: every candidate op at each level's shape, cached.

``latency_s`` is seconds of one forward + backward pass at batch ``PROFILE_BATCH`` (2, nnU-Net's
batch) on a device, from :mod:`nasmed.ops.profile`: every candidate op timed at each level's shape
and channels, each shared pre-activation norm, plus the fixed part (stem, entries, projections,
heads) timed as the network with every edge zero. An architecture's latency is the sum of its
parts, so it ignores the overlap and overheads of a whole network; it ranks architectures by time
where FLOPs do not. The batch matters beyond proportion: on this project's CPU a 3x3x3 conv at
32^3, 16 channels takes longer at batch 1 than at batch 2 (oneDNN picks another backward
kernel), so profiles are keyed by batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nasmed.genotype import Genotype, check_space
from nasmed.ops import op_class
from nasmed.ops.profile import Measure, ProfileCache, device_key, measure, measure_op
from nasmed.supernet.cell import preact_block
from nasmed.supernet.network import CellNetwork
from searchspaces import SearchSpace

__all__ = [
    "PROFILE_BATCH",
    "LatencyTable",
    "architecture_latency",
    "latency_table",
    "preact_sources",
]

#: Batch of the latency profiles (nnU-Net's and ``nasmed search``'s default).
PROFILE_BATCH = 2


def preact_sources(genotype: Genotype, key: str) -> set[int]:
    """Sources of ``key``'s cell whose shared norm runs (a kept edge with a non-raw op)."""
    return {
        source
        for (source, _node), op in genotype.cell(key).edges().items()
        if not getattr(op_class(op), "raw_input", False)
    }


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
            total += len(preact_sources(genotype, layer.key)) * table.preact[layer.level]
    return total
