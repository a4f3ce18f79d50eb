"""The U-Net-shaped network of cells shared by the supernet and derived networks.

stem -> [encoder cells at level 0] -> per level 1..L: reduction cell, encoder cells ->
per level L-1..0: expansion cell, + the same level's encoder output (summed), decoder cells ->
head. With ``stem_stride`` 2, the stem ends with a stride-2 conv block and the head upsamples
(as the space's expansion cells do) and adds the full-resolution stem output before the final
1x1x1 conv. Which operations each cell holds and runs is given from outside (edges at
construction, plans per forward), so a supernet's sampled child and the derived network of the
same genotype run the same modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from nasmed.ops import OpCost, conv_block, conv_block_cost
from nasmed.supernet.cell import Cell, CellPlan, entry_block, entry_cost, projection_cost
from searchspaces import CellType, Layer, SearchSpace

__all__ = ["CellNetwork", "EdgeOps", "fixed_cost"]

#: Per layer, the operations its cell holds per edge ``(source, node)``.
EdgeOps = Callable[[Layer], Mapping[tuple[int, int], Sequence[str]]]


def _head(spatial_dims: int, channels: int, out_channels: int) -> nn.Module:
    return Convolution(
        spatial_dims, channels, out_channels, kernel_size=1, conv_only=True, bias=True
    )


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
            ``1..L-1``: ``(full, level 1, level 2, ...)``.
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
        if space.stem_stride == 2:
            cs = space.stem_channels(width)
            self.stem = conv_block(sd, in_channels, cs, kernel=3, norm=norm, act=act)
            self.down: nn.Module | None = conv_block(
                sd, cs, ch[0], kernel=3, stride=2, norm=norm, act=act
            )
            self.up: nn.Module | None = entry_block(
                CellType.EXPANSION, sd, ch[0], cs, norm=norm, act=act, upsample=space.upsample
            )
            self.head = _head(sd, cs, out_channels)
        else:
            self.stem = conv_block(sd, in_channels, ch[0], kernel=3, norm=norm, act=act)
            self.down = self.up = None
            self.head = _head(sd, ch[0], out_channels)
        self.cells = nn.ModuleDict()
        for layer in self.layers:
            self.cells[layer.name] = Cell(
                layer.cell_type,
                _in_channels(layer, ch),
                ch[layer.level],
                edge_ops(layer),
                space.nodes,
                spatial_dims=sd,
                norm=norm,
                act=act,
                upsample=space.upsample,
            )
        self.aux_heads = nn.ModuleDict()
        if deep_supervision:
            for level in range(1, space.levels):
                self.aux_heads[str(level)] = _head(sd, ch[level], out_channels)
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
                x = x + skips.pop(layer.level)
            if str(layer.level) in self.aux_heads and self._last_decoder[layer.level] == layer.name:
                aux[layer.level] = self.aux_heads[str(layer.level)](x)
        if self.up is not None:
            x = self.up(x) + full
        out: torch.Tensor = self.head(x)
        if self.deep_supervision and self.training:
            return (out, *(aux[level] for level in sorted(aux)))
        return out


def _in_channels(layer: Layer, channels: Sequence[int]) -> int:
    if layer.cell_type is CellType.REDUCTION:
        return channels[layer.level - 1]
    if layer.cell_type is CellType.EXPANSION:
        return channels[layer.level + 1]
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
    head = OpCost(out_channels * (ch[0] + 1), 2.0 * ch[0] * out_channels, 4.0 * out_channels)
    if space.stem_stride == 2:
        cs = space.stem_channels(width)
        parts.append((conv_block_cost(sd, in_channels, cs, kernel=3), full))
        parts.append((conv_block_cost(sd, cs, ch[0], kernel=3, stride=2), voxels[0]))
        parts.append((entry_cost(CellType.EXPANSION, sd, ch[0], cs, space.upsample), full))
        head = OpCost(out_channels * (cs + 1), 2.0 * cs * out_channels, 4.0 * out_channels)
    else:
        parts.append((conv_block_cost(sd, in_channels, ch[0], kernel=3), full))
    parts.append((head, full))
    for layer in space.layers():
        c, n = ch[layer.level], voxels[layer.level]
        parts.append(
            (entry_cost(layer.cell_type, sd, _in_channels(layer, ch), c, space.upsample), n)
        )
        parts.append((projection_cost(sd, space.nodes, c), n))
    params = sum(cost.params for cost, _ in parts)
    flops = sum(cost.flops * n for cost, n in parts)
    act = sum(cost.act_bytes * n for cost, n in parts)
    return params, flops, act
