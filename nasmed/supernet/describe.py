"""A text summary of a search space: structure, size, parameter range, cost of a child.

With a latency profile (measured on request, or found in the profile cache,
:mod:`nasmed.ops.profile`) it also lists every candidate op's measured seconds per level, next to
its declared FLOPs, and the measured latency of the child.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from nasmed.ops import op_cost
from nasmed.supernet.cost import Cost, architecture_cost, expected_cost, param_range
from nasmed.supernet.latency import (
    PROFILE_BATCH,
    LatencyTable,
    architecture_latency,
    latency_table,
)
from nasmed.supernet.sampling import sample_genotype
from searchspaces import SearchSpace

__all__ = ["describe_space", "format_cost"]


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def format_cost(cost: Cost) -> str:
    """``params 1.23 M, 4.56 GFLOP, activations 0.78 GB``."""
    return (
        f"params {_si(cost.params, '')}".rstrip()
        + f", {_si(cost.flops, 'FLOP')} per forward, activations {_si(cost.act_bytes, 'B')}"
    )


def describe_space(
    space: SearchSpace,
    patch: Sequence[int] | None = None,
    *,
    in_channels: int = 1,
    out_channels: int = 2,
    latency: bool | None = None,
    device: str = "cpu",
) -> str:
    """Multi-line summary of ``space`` with costs at ``patch`` (default: its default patch).

    Args:
        space: the space.
        patch: the patch of the cost figures.
        in_channels: image channels.
        out_channels: classes.
        latency: ``True``: measure the op profile on ``device`` (cached); ``None``: show it
            if the cache has it; ``False``: leave it out.
        device: the profile's device.

    Raises:
        SpaceError: the patch does not fit the space.
    """
    sides = tuple(patch) if patch is not None else space.default_patch
    size, distinct = space.size(), space.distinct_size()
    dims = len(sides) if sides else 3
    lines = [
        f"search space {space.name} (hash {space.content_hash()[:12]})",
        f"  {space.description}" if space.description else "",
        f"levels: {space.levels} below a stride-{space.stem_stride} stem; channels per level "
        f"{list(space.channels())}; patch sides must be multiples of {_divisor(space)}",
        f"cells: {len(space.layers())} ({space.cells_per_level} normal per level); structures "
        f"searched per {'cell type' if space.sharing.value == 'cell_type' else 'layer'}: "
        f"{len(space.arch_keys())}",
        f"cell: {space.nodes} nodes, each keeping {space.inputs_per_node} inputs "
        f"(fewer for the first nodes); output {_OUTPUT[space.cell_output.value]}; "
        f"{'pre' if space.preact else 'post'}-activation ops",
        f"ops ({len(space.ops)}): {', '.join(space.ops)}",
        f"norm {space.norm}, act {space.act}, expansion upsampling {space.upsample.value}, "
        f"skips {space.skip.value}, stem {space.stem_blocks} conv block(s), "
        + (
            f"level{'s 0-' if space.fixed_levels > 1 else ' '}{space.fixed_levels - 1} fixed "
            "(nnU-Net-like residual blocks, no cells)"
            if space.fixed_levels
            else "every level searched"
        ),
        _macro_line(space),
        f"size: {distinct} distinct networks (10^{math.log10(distinct):.1f}); {size} genotypes "
        f"(10^{math.log10(size):.1f}: zero edges make distinct genotypes equal networks)",
    ]
    low, high = param_range(space, in_channels, out_channels, spatial_dims=dims)
    lines.append(
        f"parameters: {_si(low, '')} to {_si(high, '')} "
        f"({in_channels} input channel(s), {out_channels} classes)".replace("  ", " ")
    )
    if sides:
        child = architecture_cost(
            sample_genotype(space, 0), space, in_channels, out_channels, sides
        )
        zero = {
            k: {
                "ops": torch.zeros(len(space.edges()), len(space.ops)),
                "inputs": torch.zeros(len(space.edges())),
            }
            for k in space.arch_keys()
        }
        mean = expected_cost(zero, space, sides, in_channels=in_channels, out_channels=out_channels)
        mean_cost = Cost(int(mean["params"]), float(mean["flops"]), float(mean["act_bytes"]))
        patch_text = "x".join(str(s) for s in sides)
        lines.append(f"child at patch {patch_text}, batch 1 (random, seed 0): {format_cost(child)}")
        lines.append(f"mean child at patch {patch_text}: {format_cost(mean_cost)}")
        table = None
        if space.has_macro and latency:
            lines.append("measured latency: not available for macro choices yet")
        elif latency is not False and not space.has_macro:
            table = latency_table(
                space,
                sides,
                in_channels=in_channels,
                out_channels=out_channels,
                device=device,
                measure_missing=bool(latency),
            )
        if table is not None:
            lines += _latency_lines(space, sides, table)
    return "\n".join(line for line in lines if line)


def _divisor(space: SearchSpace) -> str:
    divs = space.axis_divisors()
    return " x ".join(map(str, divs)) + " (per axis)" if divs else str(space.divisor)


def _macro_line(space: SearchSpace) -> str:
    """The macro choices and how many networks they make (empty without)."""
    if not space.has_macro:
        return ""
    parts = []
    if space.stride_options:
        opts = " | ".join("x".join(map(str, o)) for o in space.stride_options)
        parts.append(f"strides per level 1..{space.levels} from {opts}")
    if space.width_options:
        opts = ", ".join(f"{w:g}x" for w in space.width_options)
        parts.append(f"width per level 0..{space.levels} from {opts}")
    return (
        f"macro choices: {'; '.join(parts)} ({space.macro_size()} macro structures, counted "
        "in the size)"
    )


_OUTPUT = {
    "concat": "= 1x1x1 conv block of the concatenated nodes",
    "residual": "= 1x1x1 projection of the concatenated nodes + node 0",
    "sum": "= node 0 + the sum of the nodes",
}


def _latency_lines(space: SearchSpace, sides: Sequence[int], table: LatencyTable) -> list[str]:
    child = architecture_latency(sample_genotype(space, 0), space, table)
    lines = [
        f"measured ({table.device}; forward + backward, batch {PROFILE_BATCH}): fixed part "
        f"{table.fixed_s * 1e3:.1f} ms, child (seed 0) {child * 1e3:.1f} ms (sum of parts)",
        "per op, ms (declared kFLOP per voxel):",
    ]
    for level, c in enumerate(space.channels()):
        shape = "x".join(str(p // (space.stem_stride * 2**level)) for p in sides)
        cells = []
        for op in space.ops:
            flops = op_cost(op, len(sides), in_channels=c, out_channels=c, normed=not space.preact)
            cells.append(f"{op} {table.ops[level][op] * 1e3:.1f} ({flops.flops / 1e3:.1f})")
        lines.append(f"  level {level} ({c} ch, {shape}): " + ", ".join(cells))
    return lines
