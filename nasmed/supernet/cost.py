"""Costs from the operations' declarations: of one architecture, and expected under sampling.

Every declared cost is the sum of declared costs (``nasmed.ops``), nothing is run: parameters,
FLOPs of one forward pass, and bytes of activations kept for the backward pass (float32, batch
1). The activation figure is an estimate to compare architectures and to budget the search, not
a prediction of a process's peak memory. Deep-supervision heads are not counted. In a
pre-activation space the shared norm of a source node is counted when one of its kept edges runs
a non-raw op (exact for one architecture; the expected cost counts every source, an upper bound).

``expected_cost(...)["latency_s"]`` is the *measured* latency (:mod:`nasmed.supernet.latency`)
in expectation, measured only when first read.

Macro choices: an architecture's cost uses its strides (voxels per level) and widths (channels
per level). The expected cost is exact in them: levels choose independently, so the expected
voxel count of level ``l`` is the product of the expected ``1 / prod(stride)`` of levels
``1..l``, and every part's cost per voxel is averaged over the widths of the levels it touches.
One approximation: the weights of an expansion cell's transposed convolution (kernel = stride)
are counted at the isotropic kernel in expectation (an upper bound; exact per architecture).
Measured latencies do not cover macro choices yet (``latency_s`` refuses such a space).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nasmed.genotype import Genotype, check_space
from nasmed.ops import op_cost
from nasmed.supernet.cell import preact_cost
from nasmed.supernet.fixed import fixed_cost, fixed_parts
from nasmed.supernet.latency import latency_table, preact_sources
from nasmed.supernet.macro import level_channels
from nasmed.supernet.plans import kept_probabilities
from searchspaces import SearchSpace

__all__ = ["Cost", "architecture_cost", "expected_cost", "level_voxels", "param_range"]


@dataclass(frozen=True)
class Cost:
    """Parameters, FLOPs per forward pass, activation bytes (batch 1)."""

    params: int
    flops: float
    act_bytes: float


def level_voxels(
    space: SearchSpace, patch: Sequence[int], strides: Sequence[Sequence[int]] | None = None
) -> list[float]:
    """Voxels at levels ``0..levels``, then the input's (after checking the patch fits);
    ``strides``: per encoder level, its per-axis strides (default 2 on every axis)."""
    sides = space.check_patch(patch)
    full = float(math.prod(sides))
    dims = len(sides)
    out = [full / space.stem_stride**dims]
    for level in range(1, space.levels + 1):
        step = 2**dims if strides is None else math.prod(strides[level - 1])
        out.append(out[-1] / step)
    return [*out, full]


def _op_table(
    space: SearchSpace, width: float, dims: int, channels: Sequence[int] | None = None
) -> list[dict[str, tuple[int, float, float]]]:
    """Per level, per op: (params, flops per voxel, act bytes per voxel)."""
    out = []
    for c in space.channels(width) if channels is None else channels:
        row = {}
        for op in space.ops:
            cost = op_cost(op, dims, in_channels=c, out_channels=c, normed=not space.preact)
            row[op] = (cost.params, cost.flops, cost.act_bytes)
        out.append(row)
    return out


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
    dims = len(patch)
    strides = genotype.level_strides(space, dims)
    channels = level_channels(space, genotype.level_widths(space), width)
    voxels = level_voxels(space, patch, strides)
    params, flops, act = fixed_cost(
        space,
        in_channels,
        out_channels,
        voxels,
        width=width,
        spatial_dims=dims,
        channels=channels,
        strides=strides,
    )
    table = _op_table(space, width, dims, channels)
    for layer in space.layers():
        n = voxels[layer.level]
        for edge_op in genotype.cell(layer.key).edges().values():
            p, f, a = table[layer.level][edge_op]
            params += p
            flops += f * n
            act += a * n
        if space.preact:
            norm = preact_cost(channels[layer.level])
            count = len(preact_sources(genotype, layer.key))
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
    edges = sum(space.kept(i) for i in range(1, space.nodes + 1))
    ends = []
    for w in (min(space.width_options or (1.0,)), max(space.width_options or (1.0,))):
        channels = level_channels(space, (w,) * (space.levels + 1), width)
        ends.append(
            (
                fixed_cost(
                    space,
                    in_channels,
                    out_channels,
                    voxels,
                    width=width,
                    spatial_dims=spatial_dims,
                    channels=channels,
                )[0],
                _op_table(space, width, spatial_dims, channels),
                channels,
            )
        )
    (low, low_table, _), (high, high_table, high_ch) = ends
    if space.stride_options:  # anisotropic transposed kernels have fewer taps
        low = min(low, _fewest_fixed(space, in_channels, out_channels, width, spatial_dims))
    for layer in space.layers():
        low += edges * min(p for p, _, _ in low_table[layer.level].values())
        high += edges * max(p for p, _, _ in high_table[layer.level].values())
        if space.preact:  # every source's norm (low: identity and zero edges need none)
            high += space.nodes * preact_cost(high_ch[layer.level]).params
    return int(low), int(high)


def _fewest_fixed(
    space: SearchSpace, in_channels: int, out_channels: int, width: float, dims: int
) -> int:
    """Fewest fixed parameters at the narrowest widths over the stride choices."""
    w = min(space.width_options or (1.0,))
    channels = level_channels(space, (w,) * (space.levels + 1), width)
    fewest = min(space.stride_options, key=math.prod)
    strides = (fewest,) * space.levels
    voxels = [1.0] * (space.levels + 2)
    return fixed_cost(
        space,
        in_channels,
        out_channels,
        voxels,
        width=width,
        spatial_dims=dims,
        channels=channels,
        strides=strides,
    )[0]


def expected_cost(
    logits: Mapping[str, Mapping[str, torch.Tensor]],
    space: SearchSpace,
    patch: Sequence[int],
    *,
    in_channels: int = 1,
    out_channels: int = 2,
    width: float = 1.0,
    macro: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Expected cost of the sampled child under the current sampling distribution.

    Differentiable in ``logits`` (``Supernet.logits()``) and ``macro``
    (``Supernet.macro_logits()``; ``None``: uniform macro choices): each edge's op costs are
    averaged with ``softmax(ops)`` and weighted by the probability the edge is kept; voxel counts
    and channels are averaged over the macro choices (see the module docs). The temperature does
    not enter (it only sharpens the samples, not their distribution).

    Returns:
        ``{"params": ..., "flops": ..., "act_bytes": ...}`` scalar tensors. ``"latency_s"``
        (expected measured seconds, :func:`latency_table` on the logits' device) is computed
        when first read, so a search that never budgets latency never measures anything.
    """
    dims = len(patch)
    some = next(iter(logits.values()))["ops"]
    probs = _macro_probabilities(space, macro, some)
    voxels = _expected_voxels(space, patch, probs["stride"], some)
    widths = space.width_options or (1.0,)
    wprob = probs["width"]  # per level (n_widths,)
    fixed = _fixed_table(space, in_channels, out_channels, width, dims)
    combo = wprob[0]
    for p in wprob[1:]:
        combo = (combo[:, None] * p[None, :]).flatten()  # the widths of every level, jointly
    table = torch.as_tensor(fixed.table, dtype=some.dtype, device=some.device)  # combos, parts, 3
    per_part = torch.einsum("c,cpk->pk", combo, table)
    total = {
        "params": per_part[:, 0].sum(),
        "flops": sum(per_part[p, 1] * voxels[v] for p, v in enumerate(fixed.levels)),
        "act_bytes": sum(per_part[p, 2] * voxels[v] for p, v in enumerate(fixed.levels)),
    }
    expected = {}
    for key in space.arch_keys():
        alpha = torch.softmax(logits[key]["ops"], dim=-1)
        keep = kept_probabilities(logits[key]["inputs"], space)
        expected[key] = keep @ alpha  # (n_ops,): expected number of kept edges running each op
    tables = [
        _op_table(space, width, dims, level_channels(space, (w,) * (space.levels + 1), width))
        for w in widths
    ]
    for layer in space.layers():
        n = voxels[layer.level]
        costs = torch.tensor(
            [[t[layer.level][op] for op in space.ops] for t in tables],
            dtype=some.dtype,
            device=some.device,
        )  # (n_widths, n_ops, 3)
        e = torch.einsum("w,o,wok->k", wprob[layer.level], expected[layer.key], costs)
        total["params"] = total["params"] + e[0]
        total["flops"] = total["flops"] + e[1] * n
        total["act_bytes"] = total["act_bytes"] + e[2] * n
        if space.preact:
            norms = [preact_cost(space.channels(width * w)[layer.level]) for w in widths]
            cost = torch.tensor(
                [[c.params, c.flops, c.act_bytes] for c in norms],
                dtype=some.dtype,
                device=some.device,
            )
            e = space.nodes * (wprob[layer.level] @ cost)
            total["params"] = total["params"] + e[0]
            total["flops"] = total["flops"] + e[1] * n
            total["act_bytes"] = total["act_bytes"] + e[2] * n

    def latency() -> torch.Tensor:
        if space.has_macro:
            raise ValueError(
                f"space {space.name!r}: measured latency does not cover macro choices "
                "(stride_options / width_options) yet; budget params, flops or act_bytes"
            )
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


def _macro_probabilities(
    space: SearchSpace, macro: Mapping[str, torch.Tensor] | None, like: torch.Tensor
) -> dict[str, list[torch.Tensor]]:
    """Per level, the probabilities of the stride options (levels 1..L) and of the widths
    (levels 0..L); a single option of probability 1 where the space has no choice."""

    def probs(name: str, n: int) -> torch.Tensor:
        if n <= 1:
            return like.new_ones(1)
        if macro is None:
            return like.new_full((n,), 1.0 / n)
        return torch.softmax(macro[name], dim=0)

    n_s, n_w = len(space.stride_options), len(space.width_options)
    return {
        "stride": [probs(f"stride_l{lv}", n_s) for lv in range(1, space.levels + 1)],
        "width": [probs(f"width_l{lv}", n_w) for lv in range(space.levels + 1)],
    }


def _expected_voxels(
    space: SearchSpace, patch: Sequence[int], stride_probs: Sequence[torch.Tensor], like: Any
) -> list[Any]:
    """Expected voxels per level 0..L, then the input's (levels choose independently)."""
    base = level_voxels(space, patch)
    if not space.stride_options:
        return base
    dims = len(patch)
    inverse = like.new_tensor([1.0 / math.prod(o) for o in space.stride_options])
    out: list[Any] = [base[0]]
    for level in range(1, space.levels + 1):
        out.append(out[-1] * (stride_probs[level - 1] @ inverse))
    assert all(len(o) == dims for o in space.stride_options)
    return [*out, base[-1]]


@dataclass(frozen=True)
class _FixedTable:
    """Per joint width choice of all levels, per fixed part: (params, flops/voxel, act/voxel);
    ``levels[p]``: the level whose voxels part ``p`` runs at (``-1``: the input's)."""

    table: np.ndarray
    levels: tuple[int, ...]


@functools.lru_cache(maxsize=32)
def _fixed_table(
    space: SearchSpace, in_channels: int, out_channels: int, width: float, dims: int
) -> _FixedTable:
    widths = space.width_options or (1.0,)
    rows = []
    levels: tuple[int, ...] = ()
    for choice in itertools.product(widths, repeat=space.levels + 1):
        channels = level_channels(space, choice, width)
        parts = fixed_parts(
            space, in_channels, out_channels, channels, width=width, spatial_dims=dims
        )
        levels = tuple(v for _, v in parts)
        rows.append([[c.params, c.flops, c.act_bytes] for c, _ in parts])
    return _FixedTable(np.asarray(rows, dtype=np.float64), levels)


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
