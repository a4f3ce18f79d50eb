"""Conv blocks (conv -> norm -> act, MONAI's ``Convolution``) and their declared cost."""

from __future__ import annotations

import math
from collections.abc import Sequence

from monai.networks.blocks import Convolution
from torch import nn

from nasmed.ops.registry import OpCost

__all__ = ["ACT_FLOPS", "BYTES", "NORM_FLOPS", "conv_block", "conv_block_cost", "norm_act"]

#: Bytes of one activation element (float32).
BYTES = 4
#: FLOPs per element charged for a normalisation and an activation.
NORM_FLOPS = 4
ACT_FLOPS = 1


_Factory = tuple[str, dict[str, object]]


def norm_act(norm: str, act: str) -> tuple[_Factory, _Factory]:
    """MONAI factory arguments for the space's ``norm`` and ``act`` names.

    Norms are affine (2 parameters per channel); activations run in place.
    """
    norm_arg: _Factory = (norm, {"affine": True})
    if act == "leakyrelu":
        act_arg: _Factory = (act, {"negative_slope": 0.01, "inplace": True})
    else:
        act_arg = (act, {"inplace": True})
    return norm_arg, act_arg


def _tuple(value: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, Sequence) else (value,) * spatial_dims


def conv_block(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    kernel: int | Sequence[int] = 3,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    norm: str | None = "instance",
    act: str | None = "leakyrelu",
    transposed: bool = False,
) -> nn.Module:
    """conv (no bias) -> norm -> act; with ``norm`` and ``act`` both ``None``, the conv alone.

    A ``transposed`` block has no padding: with ``kernel == stride`` it multiplies the size by
    ``stride`` exactly.
    """
    conv_only = norm is None and act is None
    norm_arg, act_arg = norm_act(norm or "instance", act or "leakyrelu")
    return Convolution(
        spatial_dims,
        in_channels,
        out_channels,
        strides=stride,
        kernel_size=_tuple(kernel, spatial_dims),
        adn_ordering="NA",
        act=None if conv_only else act_arg,
        norm=None if conv_only else norm_arg,
        dilation=dilation,
        groups=groups,
        bias=False,
        conv_only=conv_only,
        is_transposed=transposed,
        padding=0 if transposed else None,
        output_padding=0 if transposed else None,
    )


def conv_block_cost(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    kernel: int | Sequence[int] = 3,
    stride: int = 1,
    groups: int = 1,
    normed: bool = True,
    transposed: bool = False,
) -> OpCost:
    """Declared cost of :func:`conv_block` (per voxel of its output).

    A normed block keeps two output-sized tensors for the backward pass (the conv output and the
    in-place norm+act output); a bare conv keeps its output.
    """
    taps = math.prod(_tuple(kernel, spatial_dims))
    params = taps * in_channels * out_channels // groups
    per_voxel_taps = taps / stride**spatial_dims if transposed else taps
    flops = 2.0 * per_voxel_taps * in_channels * out_channels / groups
    kept = 1
    if normed:
        params += 2 * out_channels
        flops += (NORM_FLOPS + ACT_FLOPS) * out_channels
        kept = 2
    return OpCost(params, flops, float(kept * out_channels * BYTES))
