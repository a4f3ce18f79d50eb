"""Macro choices of the supernet: per-level downsampling strides and per-level widths.

A space with ``stride_options`` gives every encoder level ``1..L`` a categorical choice of its
per-axis strides (the expansion cell of level ``l - 1`` mirrors the stride of level ``l``); with
``width_options`` every level ``0..L`` a choice of channel multiplier. Each choice has its own
logits (``stride_l<l>``, ``width_l<l>``), next to the cells' in the architecture parameters.

The supernet samples them like the cell ops: one hard straight-through Gumbel-softmax sample per
choice and forward pass (:func:`sampled_macro`). The sample travels with the cell plans under
:data:`MACRO_KEY` as a :class:`MacroPlan`. Its gradient paths:

- a stride choice's weight (value 1) multiplies the output of the level's reduction cell;
- a width choice's weights ``g`` make a channel mask ``m[c] = sum_{k: c_k > c} g_k`` over the
  computed channels (value 1 everywhere), multiplied into the output of every cell of the level:
  ``dL/dg_k`` is the loss's sensitivity to the first ``c_k`` channels, FBNetV2's channel masking
  (Wan et al. 2020) restricted to the channels the sampled child computes.

Weights are shared the way slimmable / once-for-all networks share them: the supernet holds the
widest kernel of every level, and a child of width ``c`` uses its first ``c`` output (and input)
channels. No library slices MONAI / torch modules in place, hence :func:`make_dynamic`: it swaps
the class of every convolution, norm and upsampling module of a :class:`CellNetwork` for a
subclass whose forward slices the weights to the input's channels and the level's active width,
and reads the level's active stride. Inputs of concatenations (a cell's projection, the
``skip: concat`` entry) are sliced per segment. Rotated pseudo-3D kernels read the weight
directly, so they run unrotated in a dynamic network (the same function, slower on CPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasmed.supernet.gumbel import gumbel_noise, gumbel_softmax_st
from searchspaces import SearchSpace

__all__ = [
    "MACRO_KEY",
    "MacroPlan",
    "MacroState",
    "level_channels",
    "macro_log_prob",
    "macro_logit_shapes",
    "make_dynamic",
    "sampled_macro",
    "width_mask",
]

#: The key of the :class:`MacroPlan` in a mapping of cell plans (no architecture key starts
#: with an underscore).
MACRO_KEY = "_macro"


@dataclass(frozen=True)
class MacroPlan:
    """The macro choices of one forward pass.

    Attributes:
        strides: per encoder level 1..L, the per-axis strides (``None``: 2 on every axis).
        widths: per level 0..L, the channel multiplier (``None``: 1 everywhere).
        stride_weights: per level 1..L, the straight-through weight of the sampled stride
            (``None`` entries: fixed).
        width_weights: per level 0..L, the straight-through one-hot over the width options.
        stride_index: per level, the sampled option's index (for log-probabilities).
        width_index: per level, the sampled option's index.
    """

    strides: tuple[tuple[int, ...], ...] | None = None
    widths: tuple[float, ...] | None = None
    stride_weights: tuple[torch.Tensor | None, ...] = ()
    width_weights: tuple[torch.Tensor | None, ...] = ()
    stride_index: tuple[int, ...] = ()
    width_index: tuple[int, ...] = ()


def macro_logit_shapes(space: SearchSpace) -> dict[str, int]:
    """``{name: number of options}`` of the macro choices, ``stride_l*`` then ``width_l*``."""
    out: dict[str, int] = {}
    if space.stride_options:
        for level in range(1, space.levels + 1):
            out[f"stride_l{level}"] = len(space.stride_options)
    if space.width_options:
        for level in range(space.levels + 1):
            out[f"width_l{level}"] = len(space.width_options)
    return out


def level_channels(space: SearchSpace, widths: Sequence[float], width: float = 1.0) -> list[int]:
    """Channels of levels 0..L at per-level multipliers ``widths`` (times ``width``)."""
    return [space.channels(width * w)[level] for level, w in enumerate(widths)]


def sampled_macro(
    logits: Mapping[str, torch.Tensor],
    space: SearchSpace,
    tau: float,
    generator: torch.Generator | None = None,
) -> MacroPlan:
    """One hard straight-through Gumbel-softmax sample of every macro choice (strides first,
    level by level, then widths)."""
    strides: list[tuple[int, ...]] = []
    s_weights: list[torch.Tensor | None] = []
    s_index: list[int] = []
    for level in range(1, space.levels + 1):
        if not space.stride_options:
            break
        y = gumbel_softmax_st(logits[f"stride_l{level}"], tau, generator)
        j = int(y.detach().argmax())
        strides.append(space.stride_options[j])
        s_weights.append(y[j])
        s_index.append(j)
    widths: list[float] = []
    w_weights: list[torch.Tensor | None] = []
    w_index: list[int] = []
    for level in range(space.levels + 1):
        if not space.width_options:
            break
        y = gumbel_softmax_st(logits[f"width_l{level}"], tau, generator)
        j = int(y.detach().argmax())
        widths.append(float(space.width_options[j]))
        w_weights.append(y)
        w_index.append(j)
    return MacroPlan(
        tuple(strides) if strides else None,
        tuple(widths) if widths else None,
        tuple(s_weights),
        tuple(w_weights),
        tuple(s_index),
        tuple(w_index),
    )


def sample_macro_indices(
    logits: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
) -> dict[str, int]:
    """Exact categorical samples (Gumbel-max) of every macro choice, ``{name: index}``."""
    out = {}
    with torch.no_grad():
        for name, value in logits.items():
            noise = gumbel_noise(value.shape, generator).to(value.device)
            out[name] = int((value.detach() + noise).argmax())
    return out


def macro_log_prob(plan: MacroPlan, logits: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """Log-probability of ``plan``'s sampled choices under ``logits`` (``None``: no choice)."""
    terms = [
        torch.log_softmax(logits[f"stride_l{level}"], dim=0)[j]
        for level, j in enumerate(plan.stride_index, start=1)
    ]
    terms += [
        torch.log_softmax(logits[f"width_l{level}"], dim=0)[j]
        for level, j in enumerate(plan.width_index)
    ]
    return torch.stack(terms).sum() if terms else None


def width_mask(weights: torch.Tensor, options: Sequence[int], active: int) -> torch.Tensor:
    """``(active,)``: ``m[c] = sum_{k: options[k] > c} weights[k]`` (see the module docs)."""
    chans = torch.tensor(list(options), device=weights.device)
    below = chans[None, :] > torch.arange(active, device=weights.device)[:, None]
    return below.to(weights.dtype) @ weights


# -- dynamic (sliced) modules ----------------------------------------------------------------


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
