"""Declared cost (params, FLOPs, activation bytes) of a cell network's fixed parts: the stem,
the head, every cell's entry block and output projection; everything but the searched edges,
whose costs :mod:`nasmed.supernet.cost` adds from the op registry."""

from __future__ import annotations

import math
from collections.abc import Sequence

from nasmed.ops import OpCost, conv_block_cost
from nasmed.supernet.cell import entry_cost, preact_cost, projection_cost
from nasmed.supernet.network import cell_in_channels
from nasmed.supernet.toplevels import top_level_parts
from searchspaces import CellType, SearchSpace, Upsample

__all__ = ["fixed_cost", "fixed_parts"]


def fixed_parts(
    space: SearchSpace,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int],
    *,
    width: float = 1.0,
    spatial_dims: int = 3,
    strides: Sequence[Sequence[int]] | None = None,
) -> list[tuple[OpCost, int]]:
    """The declared parts of everything but the searched edges (the fixed top levels' blocks
    included), each with the level whose voxel count it runs at (``-1``: the input's
    resolution); ``channels`` per level 0..L, ``width`` the global multiplier (of the stride-2
    stem's channels). See :func:`fixed_cost`."""
    ch, sd = channels, spatial_dims
    parts: list[tuple[OpCost, int]] = []
    top = ch[0]
    if space.stem_blocks == 0:  # no full-resolution stage: stride-2 block in, transposed head out
        parts.append((conv_block_cost(sd, in_channels, top, kernel=3, stride=2), 0))
        taps = space.head_kernel**sd  # kernel taps; each output voxel sees taps / 2^sd of them
        head = OpCost(
            out_channels * (taps * top + 1),
            2.0 * taps / 2**sd * top * out_channels,
            4.0 * out_channels,
        )
        parts.append((head, -1))
        if space.preact:  # the head's norm -> act runs at level 0
            parts.append((preact_cost(top), 0))
        return parts + top_level_parts(space, sd, ch) + _cell_parts(space, ch, sd, strides)
    if space.stem_stride == 2:
        top = space.stem_channels(width)
        parts.append((conv_block_cost(sd, top, ch[0], kernel=3, stride=2), 0))
        parts.append((entry_cost(CellType.EXPANSION, sd, ch[0], top, space.upsample), -1))
    parts.append((conv_block_cost(sd, in_channels, top, kernel=3), -1))
    for _ in range(space.stem_blocks - 1):  # the stem's and the head's extra blocks
        block = conv_block_cost(sd, top, top, kernel=3)
        parts.append((block + block, -1))
    head = OpCost(out_channels * (top + 1), 2.0 * top * out_channels, 4.0 * out_channels)
    if space.preact:
        head = head + preact_cost(top)
    parts.append((head, -1))
    return parts + top_level_parts(space, sd, ch) + _cell_parts(space, ch, sd, strides)


def _cell_parts(
    space: SearchSpace,
    ch: Sequence[int],
    sd: int,
    strides: Sequence[Sequence[int]] | None,
) -> list[tuple[OpCost, int]]:
    """Every cell's entry block and output projection, each with its level."""
    parts: list[tuple[OpCost, int]] = []
    for layer in space.layers():
        c = ch[layer.level]
        cin = cell_in_channels(space, layer, ch)
        entry = entry_cost(layer.cell_type, sd, cin, c, space.upsample)
        if layer.cell_type is CellType.EXPANSION and strides is not None:
            stride = strides[layer.level]
            if space.upsample is Upsample.TRANSPOSED and set(stride) != {2}:
                # kernel == stride: one tap per output voxel, prod(stride) taps of weights
                one = conv_block_cost(sd, cin, c, kernel=1)
                entry = OpCost(
                    one.params + (math.prod(stride) - 1) * cin * c, one.flops, one.act_bytes
                )
        parts.append((entry, layer.level))
        parts.append(
            (
                projection_cost(sd, space.nodes, c, space.cell_output, preact=space.preact),
                layer.level,
            )
        )
    return parts


def fixed_cost(
    space: SearchSpace,
    in_channels: int,
    out_channels: int,
    voxels: Sequence[float],
    *,
    width: float = 1.0,
    spatial_dims: int = 3,
    channels: Sequence[int] | None = None,
    strides: Sequence[Sequence[int]] | None = None,
) -> tuple[int, float, float]:
    """Params, FLOPs and activation bytes of everything but the searched edges.

    ``voxels[l]`` is the voxel count at level ``l``; ``voxels[-1]`` the input's. Counts the stem,
    head, entry blocks and output projections of every cell, and the decoder's skip sums.
    ``channels`` (per level) and ``strides`` (per encoder level) are a macro choice's (default:
    the space's channels at ``width``, stride 2 on every axis).
    """
    ch = space.channels(width) if channels is None else channels
    parts = fixed_parts(
        space,
        in_channels,
        out_channels,
        ch,
        width=width,
        spatial_dims=spatial_dims,
        strides=strides,
    )
    params = sum(cost.params for cost, _ in parts)
    flops = sum(cost.flops * voxels[v] for cost, v in parts)
    act = sum(cost.act_bytes * voxels[v] for cost, v in parts)
    return params, flops, act
