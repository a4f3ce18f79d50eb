"""The built-in candidate operations (docs/search.md explains the choice).

All are dimension-agnostic (``spatial_dims`` 2 or 3) and keep the spatial size: resolution
changes happen in the cells' fixed entry blocks, never on searched edges. Built with ``norm`` and
``act`` ``None`` an operation is *bare* (its convolutions only), the form pre-activation cells
use after their shared norm -> act; ``cost(..., normed=False)`` declares that form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasmed.ops.blocks import conv_block, conv_block_cost
from nasmed.ops.registry import OpCost, register_op

__all__ = ["Conv", "DepthwiseSeparable", "Dilated", "Identity", "PseudoThreeD", "Zero"]

Norm = str | None


class Conv(nn.Module):
    """A conv block with a cubic kernel and a dilation (set by subclasses)."""

    is_zero = False
    raw_input = False
    kernel = 3
    dilation = 1

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, norm: Norm, act: Norm
    ) -> None:
        super().__init__()
        self.block = conv_block(
            spatial_dims,
            in_channels,
            out_channels,
            kernel=self.kernel,
            dilation=self.dilation,
            norm=norm,
            act=act,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)

    @classmethod
    def cost(
        cls, spatial_dims: int, in_channels: int, out_channels: int, *, normed: bool = True
    ) -> OpCost:
        return conv_block_cost(
            spatial_dims, in_channels, out_channels, kernel=cls.kernel, normed=normed
        )


@register_op("conv3", "3x3x3 convolution")
class Conv3(Conv):
    """3x3x3 conv -> norm -> act."""

    kernel = 3


@register_op("conv1", "1x1x1 convolution")
class Conv1(Conv):
    """1x1x1 conv -> norm -> act."""

    kernel = 1


@register_op("dil3", "3x3x3 convolution, dilation 2")
class Dilated(Conv):
    """3x3x3 conv with dilation 2 (a 5x5x5 receptive field) -> norm -> act."""

    kernel = 3
    dilation = 2


@register_op("dw3", "depthwise-separable: 3x3x3 depthwise then 1x1x1 pointwise")
class DepthwiseSeparable(nn.Module):
    """3x3x3 depthwise conv, then 1x1x1 pointwise conv -> norm -> act."""

    is_zero = False
    raw_input = False

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, norm: Norm, act: Norm
    ) -> None:
        super().__init__()
        self.depthwise = conv_block(
            spatial_dims, in_channels, in_channels, groups=in_channels, norm=None, act=None
        )
        self.pointwise = conv_block(
            spatial_dims, in_channels, out_channels, kernel=1, norm=norm, act=act
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

    @classmethod
    def cost(
        cls, spatial_dims: int, in_channels: int, out_channels: int, *, normed: bool = True
    ) -> OpCost:
        dw = conv_block_cost(
            spatial_dims, in_channels, in_channels, groups=in_channels, normed=False
        )
        pw = conv_block_cost(spatial_dims, in_channels, out_channels, kernel=1, normed=normed)
        return dw + pw


class PseudoThreeD(nn.Module):
    """Pseudo-3D: an in-plane 3x3 conv, then a 3-tap conv across the plane -> norm -> act.

    ``through`` is the axis across the plane (2 for 3x3x1 then 1x1x3). In 2D the axis is taken
    modulo 2, so the op stays a factorised 3x3 conv. With ``permute`` set (3D), the forward pass
    moves the ``through`` axis last and runs the kernels rotated to 3x3x1 then 1x1x3: the same
    function and parameters (kept in their natural orientation), but PyTorch's CPU convolution
    runs a 1x3x3 then 3x1x1 pair about 1.7x slower than 3x3x1 then 1x1x3 at 32^3, 16 channels
    (measured, docs/search.md).
    """

    is_zero = False
    raw_input = False
    through = 2
    permute = False

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, norm: Norm, act: Norm
    ) -> None:
        super().__init__()
        self.rotate = self.permute and spatial_dims == 3 and self.through % 3 != 2
        first, second = self.kernels(spatial_dims)
        self.plane = conv_block(
            spatial_dims, in_channels, out_channels, kernel=first, norm=None, act=None
        )
        self.across = conv_block(
            spatial_dims, out_channels, out_channels, kernel=second, norm=norm, act=act
        )

    @classmethod
    def kernels(cls, spatial_dims: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        axis = cls.through % spatial_dims
        first = tuple(1 if a == axis else 3 for a in range(spatial_dims))
        second = tuple(3 if a == axis else 1 for a in range(spatial_dims))
        return first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rotate:
            return self.across(self.plane(x))
        axis = 2 + self.through % 3
        y = x.movedim(axis, -1)
        for block in (self.plane, self.across):
            conv = block.get_submodule("conv")
            assert isinstance(conv, nn.Conv3d)
            padding = [int(conv.padding[a]) for a in _moved(axis - 2)]
            weight = conv.weight.movedim(axis, -1).contiguous()
            y = F.conv3d(y, weight, padding=padding)
        if hasattr(self.across, "adn"):  # instance norm and activation ignore the axis order
            y = self.across.get_submodule("adn")(y)
        return y.movedim(-1, axis)

    @classmethod
    def cost(
        cls, spatial_dims: int, in_channels: int, out_channels: int, *, normed: bool = True
    ) -> OpCost:
        first, second = cls.kernels(spatial_dims)
        plane = conv_block_cost(spatial_dims, in_channels, out_channels, kernel=first, normed=False)
        across = conv_block_cost(
            spatial_dims, out_channels, out_channels, kernel=second, normed=normed
        )
        return plane + across


def _moved(axis: int) -> tuple[int, ...]:
    """Spatial axes ``0, 1, 2`` after moving ``axis`` last."""
    rest = [a for a in range(3) if a != axis]
    return (*rest, axis)


@register_op("p3d331", "pseudo-3D: 3x3x1 then 1x1x3 convolution")
class P3D331(PseudoThreeD):
    """Pseudo-3D: 3x3x1 then 1x1x3."""

    through = 2


@register_op("p3d313", "pseudo-3D: 3x1x3 then 1x3x1 convolution")
class P3D313(PseudoThreeD):
    """Pseudo-3D: 3x1x3 then 1x3x1."""

    through = 1


@register_op("p3d133", "pseudo-3D: 1x3x3 then 3x1x1 convolution")
class P3D133(PseudoThreeD):
    """Pseudo-3D: 1x3x3 then 3x1x1 (run rotated, see :class:`PseudoThreeD`)."""

    through = 0
    permute = True


@register_op("identity", "identity (skip)")
class Identity(nn.Module):
    """The input unchanged (needs ``in_channels == out_channels``).

    ``raw_input``: in a pre-activation cell it passes the raw state, not the normalised one, so
    identity edges make residual paths.
    """

    is_zero = False
    raw_input = True

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, norm: Norm, act: Norm
    ) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(
                f"identity needs in_channels == out_channels, got {in_channels} -> {out_channels}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @classmethod
    def cost(
        cls, spatial_dims: int, in_channels: int, out_channels: int, *, normed: bool = True
    ) -> OpCost:
        return OpCost(0, 0.0, 0.0)


@register_op("zero", "zero (no connection)")
class Zero(nn.Module):
    """Zeros with ``out_channels`` channels; cells skip it instead of running it."""

    is_zero = True
    raw_input = True

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, norm: Norm, act: Norm
    ) -> None:
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((x.shape[0], self.out_channels, *x.shape[2:]))

    @classmethod
    def cost(
        cls, spatial_dims: int, in_channels: int, out_channels: int, *, normed: bool = True
    ) -> OpCost:
        return OpCost(0, 0.0, 0.0)
