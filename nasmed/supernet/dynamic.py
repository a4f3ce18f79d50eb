"""The sliced (dynamic) modules of a macro supernet: one set of weights, every width and stride.

Weights are shared the way slimmable / once-for-all networks share them: the supernet holds the
widest kernel of every level, and a child of width ``c`` uses its first ``c`` output (and input)
channels. No library slices MONAI / torch modules in place, hence :func:`make_dynamic`: it swaps
the class of every convolution, norm and upsampling module of a
:class:`~nasmed.supernet.network.CellNetwork` for a subclass whose forward slices the weights to
the input's channels and the level's active width, and reads the level's active stride (the
network's :class:`MacroState`, set per forward pass from the sampled
:class:`~nasmed.supernet.macro.MacroPlan`). Inputs of concatenations (a cell's projection, the
``skip: concat`` entry) are sliced per segment. Rotated pseudo-3D kernels read the weight
directly, so they run unrotated in a dynamic network (the same function, slower on CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from searchspaces import SearchSpace

__all__ = ["MacroState", "make_dynamic"]


class MacroState:
    """The active choices of the forward pass under way (a plain object shared by the
    dynamic modules of one network; not a module, so not registered as a child)."""

    def __init__(self) -> None:
        self.channels: Sequence[int] | None = None
        self.strides: Sequence[Sequence[int]] | None = None


def _macro_attrs(module: nn.Module, state: MacroState) -> None:
    object.__setattr__(module, "macro_state", state)
    module.slim_level = None  # type: ignore[assignment]
    module.segments = 1  # type: ignore[assignment]
    module.stride_level = None  # type: ignore[assignment]


def _in_index(cin: int, cmax: int, segments: int, device: torch.device) -> torch.Tensor | None:
    """Input channels to keep: the first ``cin / segments`` of each of ``segments`` blocks."""
    if cin == cmax:
        return None
    if cin % segments or cmax % segments:
        raise ValueError(f"{cin} input channels do not split into {segments} segments")
    seg, c = cmax // segments, cin // segments
    return (
        torch.arange(segments, device=device)[:, None] * seg + torch.arange(c, device=device)
    ).flatten()


class _DynConv:
    """Mixin of the sliced convolutions (see :func:`make_dynamic`)."""

    macro_state: MacroState
    slim_level: int | None
    segments: int
    stride_level: int | None
    transposed_conv = False

    def _active(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, Any, int]:
        conv: Any = self
        weight, bias = conv.weight, conv.bias
        cin, groups = x.shape[1], conv.groups
        state = self.macro_state
        cout = conv.out_channels
        if self.slim_level is not None and state.channels is not None:
            cout = state.channels[self.slim_level]
        stride = conv.stride
        if self.stride_level is not None and state.strides is not None:
            stride = tuple(state.strides[self.stride_level - 1])
        if groups > 1:  # depthwise (checked by make_dynamic)
            groups, cout = cin, cin
            weight = weight[:cin]
        elif self.transposed_conv:
            index = _in_index(cin, conv.in_channels, self.segments, x.device)
            weight = weight[:, :cout] if index is None else weight.index_select(0, index)[:, :cout]
            if stride != conv.stride:  # a kernel of 1 tap along the axes not upsampled
                taps = [slice(None), slice(None)] + [
                    slice(None) if s == k else slice(0, 1) for s, k in zip(stride, conv.stride)
                ]
                weight = weight[tuple(taps)]
        else:
            index = _in_index(cin, conv.in_channels, self.segments, x.device)
            weight = weight[:cout] if index is None else weight[:cout].index_select(1, index)
        if bias is not None:
            bias = bias[:cout]
        return weight, bias, stride, groups


def _pad(padding: Any) -> tuple[int, ...]:
    """A transposed convolution's padding (always numeric)."""
    return tuple(int(p) for p in padding)


class DynConv3d(_DynConv, nn.Conv3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b, stride, groups = self._active(x)
        return F.conv3d(x, w, b, stride, self.padding, self.dilation, groups)


class DynConv2d(_DynConv, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b, stride, groups = self._active(x)
        return F.conv2d(x, w, b, stride, self.padding, self.dilation, groups)


class DynConvTranspose3d(_DynConv, nn.ConvTranspose3d):
    transposed_conv = True

    def forward(self, x: torch.Tensor, output_size: Any = None) -> torch.Tensor:
        w, b, stride, _ = self._active(x)
        return F.conv_transpose3d(x, w, b, stride, _pad(self.padding), 0, 1, self.dilation)


class DynConvTranspose2d(_DynConv, nn.ConvTranspose2d):
    transposed_conv = True

    def forward(self, x: torch.Tensor, output_size: Any = None) -> torch.Tensor:
        w, b, stride, _ = self._active(x)
        return F.conv_transpose2d(x, w, b, stride, _pad(self.padding), 0, 1, self.dilation)


class _DynNorm:
    """Mixin of the sliced norms: affine parameters and running statistics of the input's
    first channels."""

    def _sliced(self, x: torch.Tensor) -> tuple[Any, Any, Any, Any]:
        norm: Any = self
        c = x.shape[1]
        w = None if norm.weight is None else norm.weight[:c]
        b = None if norm.bias is None else norm.bias[:c]
        rm = None if norm.running_mean is None else norm.running_mean[:c]
        rv = None if norm.running_var is None else norm.running_var[:c]
        return w, b, rm, rv


class DynInstanceNorm(_DynNorm, nn.modules.instancenorm._InstanceNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.num_features:
            return super().forward(x)
        w, b, rm, rv = self._sliced(x)
        use_stats = self.training or not self.track_running_stats
        momentum = self.momentum if self.momentum is not None else 0.0
        return F.instance_norm(x, rm, rv, w, b, use_stats, momentum, self.eps)


class DynBatchNorm(_DynNorm, nn.modules.batchnorm._BatchNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.num_features:
            return super().forward(x)
        w, b, rm, rv = self._sliced(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        training = self.training or (rm is None and rv is None)
        return F.batch_norm(x, rm, rv, w, b, training, factor, self.eps)


class DynUpsample(nn.Upsample):
    """Interpolation by the level's active stride."""

    macro_state: MacroState
    stride_level: int | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.macro_state
        if self.stride_level is None or state.strides is None:
            return super().forward(x)
        scale = tuple(float(s) for s in state.strides[self.stride_level - 1])
        return F.interpolate(
            x, scale_factor=scale, mode=self.mode, align_corners=self.align_corners
        )


class DynInstanceNorm3d(DynInstanceNorm, nn.InstanceNorm3d):
    pass


class DynInstanceNorm2d(DynInstanceNorm, nn.InstanceNorm2d):
    pass


class DynBatchNorm3d(DynBatchNorm, nn.BatchNorm3d):
    pass


class DynBatchNorm2d(DynBatchNorm, nn.BatchNorm2d):
    pass


#: The sliced class of every module kind a cell network holds (importable, so picklable).
_SWAPS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv3d: DynConv3d,
    nn.Conv2d: DynConv2d,
    nn.ConvTranspose3d: DynConvTranspose3d,
    nn.ConvTranspose2d: DynConvTranspose2d,
    nn.Upsample: DynUpsample,
    nn.InstanceNorm3d: DynInstanceNorm3d,
    nn.InstanceNorm2d: DynInstanceNorm2d,
    nn.BatchNorm3d: DynBatchNorm3d,
    nn.BatchNorm2d: DynBatchNorm2d,
}


def swap_module(module: nn.Module, state: MacroState) -> None:
    """Give ``module`` (and every descendant) the sliced forward of its kind.

    Raises:
        ValueError: a module holds parameters of a kind that cannot be sliced (e.g. a grouped
            convolution that is not depthwise, a linear layer).
    """
    for m in module.modules():
        kind = type(m)
        if getattr(m, "rotate", False):
            m.rotate = False  # type: ignore[assignment]  # reads the weight directly
        if isinstance(m, _DynConv | DynUpsample | _DynNorm):
            continue
        new = _SWAPS.get(kind)
        if new is None:
            if any(True for _ in m.parameters(recurse=False)):
                raise ValueError(f"macro width choices cannot slice a {kind.__name__} module")
            continue
        groups = getattr(m, "groups", 1)
        if groups > 1 and not (groups == m.in_channels == m.out_channels):
            raise ValueError("macro width choices slice depthwise convolutions only")
        m.__class__ = new
        _macro_attrs(m, state)


def convs(module: nn.Module) -> list[nn.Module]:
    """The convolutions (and upsampling modules) under ``module``, in registration order."""
    return [m for m in module.modules() if isinstance(m, _DynConv | DynUpsample)]


def make_dynamic(net: Any, state: MacroState) -> None:
    """Swap every module of a :class:`~nasmed.supernet.network.CellNetwork` for its sliced
    form and tag each convolution with the level whose width its output takes, the number of
    concatenated segments of its input and the level whose stride it applies."""
    from searchspaces import CellType, Skip

    space: SearchSpace = net.space
    swap_module(net, state)

    def tag(module: nn.Module, level: int) -> None:
        for m in convs(module):
            m.slim_level = level  # type: ignore[assignment]

    if space.stem_stride == 1:
        tag(net.stem, 0)
        head = convs(net.head)
        for m in head[:-1]:
            m.slim_level = 0  # type: ignore[assignment]
    else:
        tag(net.down, 0)
    for layer in net.layers:
        cell = net.cells[layer.name]
        tag(cell, layer.level)
        if cell.project is not None:
            convs(cell.project)[0].segments = space.nodes  # type: ignore[assignment]
        if layer.cell_type is CellType.REDUCTION:
            convs(cell.entry)[0].stride_level = layer.level
        elif layer.cell_type is CellType.EXPANSION:
            convs(cell.entry)[0].stride_level = layer.level + 1
        elif space.skip is Skip.CONCAT and layer.name == f"decoder_l{layer.level}_c0":
            entry = convs(cell.entry)
            if entry:
                entry[0].segments = 2  # type: ignore[assignment]
