"""The fixed top levels of a space with ``fixed_levels``: nnU-Net-like stages, not searched.

Levels ``0..fixed_levels-1`` of such a space have no cells. In the encoder, level ``l`` is one
residual conv -> norm -> act block (``x + block(x)``) at the level's resolution, after the
stride-2 conv block that enters it (for level 0, the network's stride-2 stem block, or its stem
at ``stem_stride`` 1); in the decoder, level ``l`` is the expansion cells' entry block (a 2x2x2
transposed conv block, or trilinear upsampling + 1x1x1 conv block), the encoder's output of the
level added (or concatenated, ``skip: concat``), and one conv block, residual too when the skip
is summed. The residual paths mirror the searched cells' (``cell_output: residual``): without
them a derived network of the default space fitted a batch much more slowly (loss 0.62 / 0.59
against 0.40 / 0.39 after 200 AdamW steps at 32^3, docs/benchmarks.md). nnU-Net's stage has
two conv blocks per side; one here (counting the strided block as the encoder's first) keeps
the top level light (a second one per side reached 0.38 / 0.37 in the same test):
on CPU the searched level-0 cells of the default space cost about as much as a whole MONAI UNet
of equal parameters (docs/benchmarks.md, issue #14).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasmed.ops import OpCost, conv_block, conv_block_cost
from nasmed.supernet.cell import entry_block, entry_cost
from searchspaces import CellType, SearchSpace, Skip

__all__ = ["Residual", "decoder_block", "encoder_block", "top_level_parts", "up_block"]


class Residual(nn.Module):
    """``x + block(x)``."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.block(x)
        return out


def encoder_block(
    space: SearchSpace, spatial_dims: int, channels: Sequence[int], level: int
) -> nn.Module:
    """Fixed encoder stage of ``level``: (stride-2 conv block from ``level - 1``,) a residual
    conv block."""
    norm, act, c = space.norm, space.act, channels[level]
    block = Residual(conv_block(spatial_dims, c, c, kernel=3, norm=norm, act=act))
    if level == 0:
        return block
    down = conv_block(spatial_dims, channels[level - 1], c, kernel=3, stride=2, norm=norm, act=act)
    return nn.Sequential(down, block)


def up_block(
    space: SearchSpace, spatial_dims: int, channels: Sequence[int], level: int
) -> nn.Module:
    """Fixed decoder upsampling from ``level + 1`` to ``level`` (an expansion cell's entry)."""
    return entry_block(
        CellType.EXPANSION,
        spatial_dims,
        channels[level + 1],
        channels[level],
        norm=space.norm,
        act=space.act,
        upsample=space.upsample,
    )


def decoder_block(
    space: SearchSpace, spatial_dims: int, channels: Sequence[int], level: int
) -> nn.Module:
    """Fixed decoder stage of ``level`` after the skip: one conv block, residual with a summed
    skip (with ``skip: concat`` it takes the concatenation of the skip and the upsampled input,
    and has no residual path)."""
    c = channels[level]
    if space.skip is Skip.CONCAT:
        return conv_block(spatial_dims, 2 * c, c, kernel=3, norm=space.norm, act=space.act)
    return Residual(conv_block(spatial_dims, c, c, kernel=3, norm=space.norm, act=space.act))


def top_level_parts(
    space: SearchSpace, spatial_dims: int, channels: Sequence[int]
) -> list[tuple[OpCost, int]]:
    """Declared cost of the fixed levels' blocks, each with its level (as
    :func:`~nasmed.supernet.fixed.fixed_parts`)."""
    sd, ch = spatial_dims, channels
    parts: list[tuple[OpCost, int]] = []
    for level in range(space.fixed_levels):
        c = ch[level]
        add = OpCost(0, float(c), 0.0)  # a residual sum per voxel
        enc = conv_block_cost(sd, c, c, kernel=3) + add
        if level > 0:
            enc = enc + conv_block_cost(sd, ch[level - 1], c, kernel=3, stride=2)
        cin = 2 * c if space.skip is Skip.CONCAT else c
        dec = entry_cost(CellType.EXPANSION, sd, ch[level + 1], c, space.upsample)
        dec = dec + conv_block_cost(sd, cin, c, kernel=3)
        if space.skip is not Skip.CONCAT:
            dec = dec + add
        parts += [(enc, level), (dec, level)]
    return parts
