"""Costs from the operations' declarations: of one architecture, and expected under sampling.

Every declared cost is the sum of declared costs (``nasmed.ops``), nothing is run: parameters,
FLOPs of one forward pass, and bytes of activations kept for the backward pass (float32, batch
1). The activation figure is an estimate to compare architectures and to budget the search, not
a prediction of a process's peak memory. Deep-supervision heads are not counted. In a
pre-activation space the shared norm of a source node is counted when one of its kept edges runs
a non-raw op (exact for one architecture; the expected cost counts every source, an upper bound).

``expected_cost(...)["latency_s"]`` is the *measured* latency (:mod:`nasmed.supernet.latency`)
in expectation, measured only when first read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nasmed.genotype import Genotype, check_space
from nasmed.ops import op_cost
from nasmed.supernet.cell import preact_cost
from nasmed.supernet.latency import latency_table, preact_sources
from nasmed.supernet.network import fixed_cost
from nasmed.supernet.plans import kept_probabilities
from searchspaces import SearchSpace

__all__ = ["Cost", "architecture_cost", "expected_cost", "level_voxels", "param_range"]


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
