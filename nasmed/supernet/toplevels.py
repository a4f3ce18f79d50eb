"""The fixed top levels of a space with ``fixed_levels``: nnU-Net-like stages, not searched.

Levels ``0..fixed_levels-1`` of such a space have no cells. In the encoder, level ``l`` is one
conv -> norm -> act block at the level's resolution, after the stride-2 conv block that enters
it (for level 0, the network's stride-2 stem block, or its stem at ``stem_stride`` 1); in the
decoder, level ``l`` is the expansion cells' entry block (a 2x2x2 transposed conv block, or
trilinear upsampling + 1x1x1 conv block), the encoder's output of the level added (or
concatenated, ``skip: concat``), and one conv block. nnU-Net's stage has two conv blocks per
side; one here (counting the strided block as the encoder's first) keeps the top level light:
on CPU the searched level-0 cells of the default space cost about as much as a whole MONAI UNet
of equal parameters (docs/benchmarks.md, issue #14).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nasmed.ops import OpCost, conv_block, conv_block_cost
from nasmed.supernet.cell import entry_block, entry_cost
from searchspaces import CellType, SearchSpace, Skip

__all__ = ["decoder_block", "encoder_block", "top_level_parts", "up_block"]


def encoder_block(
    space: SearchSpace, spatial_dims: int, channels: Sequence[int], level: int
) -> nn.Module:
    """Fixed encoder stage of ``level``: (stride-2 conv block from ``level - 1``,) conv block."""
    norm, act, c = space.norm, space.act, channels[level]
    block = conv_block(spatial_dims, c, c, kernel=3, norm=norm, act=act)
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
    """Fixed decoder stage of ``level`` after the skip: one conv block (taking the
    concatenation of the skip and the upsampled input with ``skip: concat``)."""
    c = channels[level]
    cin = 2 * c if space.skip is Skip.CONCAT else c
    return conv_block(spatial_dims, cin, c, kernel=3, norm=space.norm, act=space.act)


def top_level_parts(
    space: SearchSpace, spatial_dims: int, channels: Sequence[int]
) -> list[tuple[OpCost, int]]:
    """Declared cost of the fixed levels' blocks, each with its level (as
    :func:`~nasmed.supernet.fixed.fixed_parts`)."""
    sd, ch = spatial_dims, channels
    parts: list[tuple[OpCost, int]] = []
    for level in range(space.fixed_levels):
        c = ch[level]
        enc = conv_block_cost(sd, c, c, kernel=3)
        if level > 0:
            enc = enc + conv_block_cost(sd, ch[level - 1], c, kernel=3, stride=2)
        cin = 2 * c if space.skip is Skip.CONCAT else c
        dec = entry_cost(CellType.EXPANSION, sd, ch[level + 1], c, space.upsample)
        dec = dec + conv_block_cost(sd, cin, c, kernel=3)
        parts += [(enc, level), (dec, level)]
    return parts
