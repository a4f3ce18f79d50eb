"""The U-Net-shaped network of cells shared by the supernet and derived networks.

stem -> [encoder cells at level 0] -> per level 1..L: reduction cell, encoder cells ->
per level L-1..0: expansion cell, + the same level's encoder output (summed), decoder cells ->
head. With ``stem_stride`` 2, the stem ends with a stride-2 conv block and the head upsamples
(as the space's expansion cells do) and adds the full-resolution stem output before the final
1x1x1 conv. Which operations each cell holds and runs is given from outside (edges at
construction, plans per forward), so a supernet's sampled child and the derived network of the
same genotype run the same modules.

The space's options: ``stem_blocks`` 2 makes the stem nnU-Net's first stage (two conv -> norm ->
act) and puts one more conv block before the head; ``skip: concat`` concatenates the encoder's
output with the expansion cell's (the next decoder cell's entry 1x1x1 block mixes them, as
nnU-Net's decoder does after its transposed conv); with ``preact`` the cells' outputs are raw
sums, so every head first normalises and activates. ``stem_blocks`` 0 drops the full-resolution
stage (MONAI UNet's top): the image goes straight into the stride-2 conv block and the head is a
transposed conv from level 0 to the logits, with no full-resolution skip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from nasmed.ops import OpCost, conv_block, conv_block_cost
from nasmed.supernet.cell import (
    Cell,
    CellPlan,
    entry_block,
    entry_cost,
    preact_block,
    preact_cost,
    projection_cost,
)
from searchspaces import CellType, Layer, SearchSpace, Skip

__all__ = ["CellNetwork", "EdgeOps", "fixed_cost"]

#: Per layer, the operations its cell holds per edge ``(source, node)``.
EdgeOps = Callable[[Layer], Mapping[tuple[int, int], Sequence[str]]]


def _head(
    space: SearchSpace, spatial_dims: int, channels: int, out_channels: int, blocks: int = 0
) -> nn.Module:
    """1x1x1 conv with bias, after ``blocks`` conv blocks (and a norm -> act with ``preact``)."""
    conv = Convolution(
        spatial_dims, channels, out_channels, kernel_size=1, conv_only=True, bias=True
    )
    if not blocks and not space.preact:
        return conv
    layers: list[nn.Module] = []
    if space.preact:
        layers.append(preact_block(spatial_dims, channels, space.norm, space.act))
    layers += [
        conv_block(spatial_dims, channels, channels, kernel=3, norm=space.norm, act=space.act)
        for _ in range(blocks)
    ]
    return nn.Sequential(*layers, conv)


def _transposed_head(
    space: SearchSpace, spatial_dims: int, channels: int, out_channels: int
) -> nn.Module:
    """Level 0 to full-resolution logits: a 2x2x2 stride-2 transposed conv with bias."""
    conv = Convolution(
        spatial_dims,
        channels,
        out_channels,
        strides=2,
        kernel_size=2,
        conv_only=True,
        bias=True,
        is_transposed=True,
        padding=0,
        output_padding=0,
    )
    if not space.preact:
        return conv
    return nn.Sequential(preact_block(spatial_dims, channels, space.norm, space.act), conv)


def _stem(space: SearchSpace, spatial_dims: int, in_channels: int, channels: int) -> nn.Module:
    """The full-resolution stem: ``stem_blocks`` conv blocks."""
    norm, act = space.norm, space.act
    first = conv_block(spatial_dims, in_channels, channels, kernel=3, norm=norm, act=act)
    if space.stem_blocks == 1:
        return first
    rest = [
        conv_block(spatial_dims, channels, channels, kernel=3, norm=norm, act=act)
        for _ in range(space.stem_blocks - 1)
    ]
    return nn.Sequential(first, *rest)


def aux_levels(space: SearchSpace) -> tuple[int, ...]:
    """Decoder levels with a deep-supervision head: ``0..L-1`` when the cells run below a
    stride-2 stem (level 0 is then at half the output's resolution), else ``1..L-1``."""
    return tuple(range(0 if space.stem_stride == 2 else 1, space.levels))


class CellNetwork(nn.Module):
    """Encoder–decoder of cells.

    Args:
        space: the search space (levels, channels, cell layout, norm, act).
        in_channels: image channels.
        out_channels: classes (logits).
        edge_ops: per layer, the operations its cell holds per edge.
        width: channel multiplier of every level.
        spatial_dims: 2 or 3.
        deep_supervision: in training mode, also return 1x1x1 heads of the decoder levels
            (:func:`aux_levels`: ``0..L-1`` below a stride-2 stem, else ``1..L-1``), highest
            resolution first: ``(full, level 0, level 1, ...)``, as nnU-Net's deep supervision
            and :class:`~nasmed.train.losses.DeepSupervisionLoss` take them.
    """

    def __init__(
        self,
        space: SearchSpace,
        in_channels: int,
        out_channels: int,
        edge_ops: EdgeOps,
        *,
        width: float = 1.0,
        spatial_dims: int = 3,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.space = space
        self.spatial_dims = spatial_dims
        self.layers = space.layers()
        self.deep_supervision = deep_supervision
        ch = space.channels(width)
        sd, norm, act = spatial_dims, space.norm, space.act
        blocks = space.stem_blocks - 1
        self.stem: nn.Module
        self.down: nn.Module | None
        self.up: nn.Module | None
        if space.stem_blocks == 0:  # no full-resolution stage
            self.stem = nn.Identity()
            self.down = conv_block(sd, in_channels, ch[0], kernel=3, stride=2, norm=norm, act=act)
            self.up = None
            self.head = _transposed_head(space, sd, ch[0], out_channels)
        elif space.stem_stride == 2:
            cs = space.stem_channels(width)
            self.stem = _stem(space, sd, in_channels, cs)
            self.down = conv_block(sd, cs, ch[0], kernel=3, stride=2, norm=norm, act=act)
            self.up = entry_block(
                CellType.EXPANSION, sd, ch[0], cs, norm=norm, act=act, upsample=space.upsample
            )
            self.head = _head(space, sd, cs, out_channels, blocks)
        else:
            self.stem = _stem(space, sd, in_channels, ch[0])
            self.down = self.up = None
            self.head = _head(space, sd, ch[0], out_channels, blocks)
        self.cells = nn.ModuleDict()
        for layer in self.layers:
            self.cells[layer.name] = Cell(
                layer.cell_type,
                _in_channels(space, layer, ch),
                ch[layer.level],
                edge_ops(layer),
                space.nodes,
                spatial_dims=sd,
                norm=norm,
                act=act,
                upsample=space.upsample,
                output=space.cell_output,
                preact=space.preact,
            )
        self.aux_heads = nn.ModuleDict()
        if deep_supervision:
            for level in aux_levels(space):
                self.aux_heads[str(level)] = _head(space, sd, ch[level], out_channels)
        self._last_decoder = {
            layer.level: layer.name for layer in self.layers if layer.cell_type is CellType.DECODER
        }

    def forward_plans(
        self, x: torch.Tensor, plans: Mapping[str, CellPlan]
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Run the network; each cell runs the plan of its layer's architecture key."""
        x = self.stem(x)
        full = x
        if self.down is not None:
            x = self.down(x)
        skips: dict[int, torch.Tensor] = {}
        aux: dict[int, torch.Tensor] = {}
        for layer in self.layers:
            if layer.cell_type is CellType.REDUCTION:
                skips[layer.level - 1] = x
            x = self.cells[layer.name](x, plans[layer.key])
            if layer.cell_type is CellType.EXPANSION:
                skip = skips.pop(layer.level)
                x = torch.cat([skip, x], dim=1) if self.space.skip is Skip.CONCAT else x + skip
            if str(layer.level) in self.aux_heads and self._last_decoder[layer.level] == layer.name:
                aux[layer.level] = self.aux_heads[str(layer.level)](x)
        if self.up is not None:
            x = self.up(x) + full
        out: torch.Tensor = self.head(x)
        if self.deep_supervision and self.training:
            return (out, *(aux[level] for level in sorted(aux)))
        return out


def _in_channels(space: SearchSpace, layer: Layer, channels: Sequence[int]) -> int:
    if layer.cell_type is CellType.REDUCTION:
        return channels[layer.level - 1]
    if layer.cell_type is CellType.EXPANSION:
        return channels[layer.level + 1]
    if space.skip is Skip.CONCAT and layer.name == f"decoder_l{layer.level}_c0":
        return 2 * channels[layer.level]  # the skip concatenated after the expansion cell
    return channels[layer.level]


def fixed_cost(
    space: SearchSpace,
    in_channels: int,
    out_channels: int,
    voxels: Sequence[float],
    *,
    width: float = 1.0,
    spatial_dims: int = 3,
) -> tuple[int, float, float]:
    """Params, FLOPs and activation bytes of everything but the searched edges.

    ``voxels[l]`` is the voxel count at level ``l``; ``voxels[-1]`` the input's. Counts the stem,
    head, entry blocks and output projections of every cell, and the decoder's skip sums.
    """
    ch = space.channels(width)
    sd = spatial_dims
    full = voxels[-1]
    parts: list[tuple[OpCost, float]] = []
    top = ch[0]
    if space.stem_blocks == 0:
        parts.append((conv_block_cost(sd, in_channels, top, kernel=3, stride=2), voxels[0]))
        head = OpCost(out_channels * (8 * top + 1), 2.0 * top * out_channels, 4.0 * out_channels)
        parts.append((head, full))
        if space.preact:  # the head's norm -> act runs at level 0
            parts.append((preact_cost(top), voxels[0]))
        parts += _cell_costs(space, ch, voxels, sd)
        return _sum(parts)
    if space.stem_stride == 2:
        top = space.stem_channels(width)
        parts.append((conv_block_cost(sd, top, ch[0], kernel=3, stride=2), voxels[0]))
        parts.append((entry_cost(CellType.EXPANSION, sd, ch[0], top, space.upsample), full))
    parts.append((conv_block_cost(sd, in_channels, top, kernel=3), full))
    for _ in range(space.stem_blocks - 1):  # the stem's and the head's extra blocks
        parts.append(
            (
                conv_block_cost(sd, top, top, kernel=3) + conv_block_cost(sd, top, top, kernel=3),
                full,
            )
        )
    head = OpCost(out_channels * (top + 1), 2.0 * top * out_channels, 4.0 * out_channels)
    if space.preact:
        head = head + preact_cost(top)
    parts.append((head, full))
    parts += _cell_costs(space, ch, voxels, sd)
    return _sum(parts)


def _cell_costs(
    space: SearchSpace, ch: Sequence[int], voxels: Sequence[float], sd: int
) -> list[tuple[OpCost, float]]:
    parts = []
    for layer in space.layers():
        c, n = ch[layer.level], voxels[layer.level]
        cin = _in_channels(space, layer, ch)
        parts.append((entry_cost(layer.cell_type, sd, cin, c, space.upsample), n))
        parts.append(
            (projection_cost(sd, space.nodes, c, space.cell_output, preact=space.preact), n)
        )
    return parts


def _sum(parts: Sequence[tuple[OpCost, float]]) -> tuple[int, float, float]:
    params = sum(cost.params for cost, _ in parts)
    flops = sum(cost.flops * n for cost, n in parts)
    act = sum(cost.act_bytes * n for cost, n in parts)
    return params, flops, act
