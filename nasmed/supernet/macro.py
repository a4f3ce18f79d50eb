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

The sampled widths and strides run on one set of weights: :func:`make_dynamic` makes a cell
network's modules slice their weights per forward pass (:mod:`nasmed.supernet.dynamic`,
re-exported here with its :class:`MacroState`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from nasmed.supernet.dynamic import MacroState, make_dynamic
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
