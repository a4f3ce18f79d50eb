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
transposed conv from level 0 to the logits, with no full-resolution skip. With ``fixed_levels``
k, levels 0..k-1 have no cells but fixed nnU-Net-like blocks (:mod:`nasmed.supernet.toplevels`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution
from torch import nn

from nasmed.ops import conv_block
from nasmed.supernet.cell import (
    Cell,
    entry_block,
    preact_block,
)
from nasmed.supernet.dynamic import MacroState, make_dynamic
from nasmed.supernet.macro import MACRO_KEY, MacroPlan, level_channels, width_mask
from nasmed.supernet.toplevels import decoder_block, encoder_block, up_block
from searchspaces import CellType, Layer, SearchSpace, Skip, Upsample

__all__ = ["CellNetwork", "EdgeOps", "aux_levels", "cell_in_channels"]

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
    """Level 0 to full-resolution logits: a stride-2 transposed conv with bias, of kernel
    ``space.head_kernel`` (3: padding 1 and output padding 1, so the size exactly doubles)."""
    k = space.head_kernel
    conv = Convolution(
        spatial_dims,
        channels,
        out_channels,
        strides=2,
        kernel_size=k,
        conv_only=True,
        bias=True,
        is_transposed=True,
        padding=(k - 1) // 2,
        output_padding=(k - 1) // 2,
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
        strides: per encoder level 1..L, fixed per-axis strides (``None``: 2 on every axis).
        widths: per level 0..L, fixed channel multipliers (``None``: 1 everywhere).
        dynamic: hold every level at its widest ``width_options`` choice and take the strides
            and widths of each forward pass from its plans' :class:`MacroPlan`
            (:func:`~nasmed.supernet.dynamic.make_dynamic`; the supernet of a macro space).
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
        strides: Sequence[Sequence[int]] | None = None,
        widths: Sequence[float] | None = None,
        dynamic: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.space = space
        self.spatial_dims = spatial_dims
        self.layers = space.layers()
        self.deep_supervision = deep_supervision
        self.width = width
        self.dynamic = dynamic
        if dynamic and space.stride_options and len(space.stride_options[0]) != spatial_dims:
            raise ValueError(
                f"space {space.name!r}: stride_options have {len(space.stride_options[0])} axes; "
                f"the network has {spatial_dims} spatial dims"
            )
        self.strides = _check_strides(space, strides, spatial_dims)
        if dynamic:
            widest = max(space.width_options or (1.0,))
            widths = (widest,) * (space.levels + 1)
        self.widths = tuple(widths) if widths is not None else (1.0,) * (space.levels + 1)
        if len(self.widths) != space.levels + 1:
            raise ValueError(f"widths must give {space.levels + 1} levels, got {list(self.widths)}")
        ch = tuple(level_channels(space, self.widths, width))
        self.channels = ch
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
        # the fixed top levels (fixed_levels): encoder, upsampling and decoder blocks per level
        self.top_enc = nn.ModuleDict()
        self.top_up = nn.ModuleDict()
        self.top_dec = nn.ModuleDict()
        for level in range(space.fixed_levels):
            self.top_enc[str(level)] = encoder_block(space, sd, ch, level)
            self.top_up[str(level)] = up_block(space, sd, ch, level)
            self.top_dec[str(level)] = decoder_block(space, sd, ch, level)
        self.cells = nn.ModuleDict()
        for layer in self.layers:
            cell = self.cells[layer.name] = Cell(
                layer.cell_type,
                cell_in_channels(space, layer, ch),
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
            stride = self._layer_stride(layer)
            if stride is not None:
                cell.entry = _strided_entry(
                    space, layer, sd, cell_in_channels(space, layer, ch), ch[layer.level], stride
                )
        self.aux_heads = nn.ModuleDict()
        if deep_supervision:
            for level in aux_levels(space):
                self.aux_heads[str(level)] = _head(space, sd, ch[level], out_channels)
        self._last_decoder = {
            layer.level: layer.name for layer in self.layers if layer.cell_type is CellType.DECODER
        }
        self.macro_state = MacroState()
        if dynamic:
            make_dynamic(self, self.macro_state)

    def _layer_stride(self, layer: Layer) -> tuple[int, ...] | None:
        """The fixed non-default stride of a resizing cell, if any."""
        if layer.cell_type is CellType.REDUCTION:
            stride = self.strides[layer.level - 1]
        elif layer.cell_type is CellType.EXPANSION:
            stride = self.strides[layer.level]
        else:
            return None
        return None if set(stride) == {2} else stride

    @contextlib.contextmanager
    def macro_context(self, macro: MacroPlan | None) -> Iterator[None]:
        """Within it, a dynamic network runs ``macro``'s strides and widths (``None`` or
        unset fields: the plan's defaults); a fixed network ignores it."""
        if not self.dynamic:
            yield
            return
        macro = macro or MacroPlan()
        levels = self.space.levels
        widths = macro.widths or (1.0,) * (levels + 1)
        self.macro_state.channels = level_channels(self.space, widths, self.width)
        self.macro_state.strides = macro.strides or ((2,) * self.spatial_dims,) * levels
        try:
            yield
        finally:
            self.macro_state.channels = self.macro_state.strides = None

    def macro_weights(self, macro: MacroPlan | None, layer: Layer, x: torch.Tensor) -> torch.Tensor:
        """A cell's output ``x`` times the straight-through weights of its level's sampled
        macro choices: the width mask of the level, and (reduction cells) the stride's weight."""
        if macro is None or not self.dynamic:
            return x
        level = layer.level
        if macro.width_weights and macro.width_weights[level] is not None:
            options = [self.space.channels(self.width * w)[level] for w in self.space.width_options]
            g = macro.width_weights[level]
            assert g is not None
            m = width_mask(g, options, x.shape[1]).to(x.dtype)
            x = x * m.view(1, -1, *([1] * self.spatial_dims))
        if layer.cell_type is CellType.REDUCTION and macro.stride_weights:
            w = macro.stride_weights[level - 1]
            if w is not None:
                x = x * w
        return x

    def forward_plans(
        self, x: torch.Tensor, plans: Mapping[str, Any]
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Run the network; each cell runs the plan of its layer's architecture key.

        ``plans[MACRO_KEY]`` (a :class:`MacroPlan`) gives a dynamic network its strides and
        widths (none: the plan's defaults); a fixed network ignores it.
        """
        macro = plans.get(MACRO_KEY)
        assert macro is None or isinstance(macro, MacroPlan)
        with self.macro_context(macro):
            return self._forward(x, plans, macro)

    def _forward(
        self, x: torch.Tensor, plans: Mapping[str, Any], macro: MacroPlan | None
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.stem(x)
        full = x
        if self.down is not None:
            x = self.down(x)
        skips: dict[int, torch.Tensor] = {}
        aux: dict[int, torch.Tensor] = {}
        for level in range(self.space.fixed_levels):
            if level > 0:
                skips[level - 1] = x
            x = self.top_enc[str(level)](x)
        for layer in self.layers:
            if layer.cell_type is CellType.REDUCTION:
                skips[layer.level - 1] = x
            x = self.macro_weights(macro, layer, self.cells[layer.name](x, plans[layer.key]))
            if layer.cell_type is CellType.EXPANSION:
                skip = skips.pop(layer.level)
                x = torch.cat([skip, x], dim=1) if self.space.skip is Skip.CONCAT else x + skip
            if str(layer.level) in self.aux_heads and self._last_decoder[layer.level] == layer.name:
                aux[layer.level] = self.aux_heads[str(layer.level)](x)
        for level in range(self.space.fixed_levels - 1, -1, -1):
            x, skip = self.top_up[str(level)](x), skips.pop(level)
            x = torch.cat([skip, x], dim=1) if self.space.skip is Skip.CONCAT else x + skip
            x = self.top_dec[str(level)](x)
            if str(level) in self.aux_heads:
                aux[level] = self.aux_heads[str(level)](x)
        if self.up is not None:
            x = self.up(x) + full
        out: torch.Tensor = self.head(x)
        if self.deep_supervision and self.training:
            return (out, *(aux[level] for level in sorted(aux)))
        return out


def _check_strides(
    space: SearchSpace, strides: Sequence[Sequence[int]] | None, dims: int
) -> tuple[tuple[int, ...], ...]:
    if strides is None:
        return ((2,) * dims,) * space.levels
    out = tuple(tuple(int(a) for a in s) for s in strides)
    if len(out) != space.levels or any(len(s) != dims or not set(s) <= {1, 2} for s in out):
        raise ValueError(
            f"strides must give {space.levels} levels of {dims} strides (1 or 2), got "
            f"{[list(s) for s in out]}"
        )
    return out


def _strided_entry(
    space: SearchSpace, layer: Layer, dims: int, cin: int, c: int, stride: tuple[int, ...]
) -> nn.Module:
    """The entry block of a resizing cell with per-axis ``stride`` (names as
    :func:`~nasmed.supernet.cell.entry_block`'s)."""
    norm, act = space.norm, space.act
    if layer.cell_type is CellType.REDUCTION:
        return conv_block(dims, cin, c, kernel=3, stride=stride, norm=norm, act=act)  # type: ignore[arg-type]
    if space.upsample is Upsample.TRANSPOSED:
        return conv_block(
            dims,
            cin,
            c,
            kernel=stride,
            stride=stride,  # type: ignore[arg-type]  # MONAI takes per-axis strides
            norm=norm,
            act=act,
            transposed=True,
        )
    mode = "trilinear" if dims == 3 else "bilinear"
    return nn.Sequential(
        nn.Upsample(scale_factor=tuple(float(s) for s in stride), mode=mode, align_corners=False),
        conv_block(dims, cin, c, kernel=1, norm=norm, act=act),
    )


def cell_in_channels(space: SearchSpace, layer: Layer, channels: Sequence[int]) -> int:
    """The channels entering ``layer``'s cell (``channels`` per level)."""
    if layer.cell_type is CellType.REDUCTION:
        return channels[layer.level - 1]
    if layer.cell_type is CellType.EXPANSION:
        return channels[layer.level + 1]
    if space.skip is Skip.CONCAT and layer.name == f"decoder_l{layer.level}_c0":
        return 2 * channels[layer.level]  # the skip concatenated after the expansion cell
    return channels[layer.level]
