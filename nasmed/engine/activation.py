"""Activation checkpointing: recompute blocks' activations in the backward pass.

:func:`enable_activation_checkpointing` makes each *unit* of a network run under
:func:`torch.utils.checkpoint.checkpoint` (non-reentrant, RNG state preserved) while it trains
with gradients on: the unit keeps only its inputs for the backward pass and recomputes the rest,
trading about one more forward pass for the memory of its inner activations. The gradients are
those of the plain network (to float rounding). Units, by default, are the entries of the
shallowest ``ModuleList``/``ModuleDict`` containers of the network (a cell network's cells,
DynUNet's down- and up-sampling blocks), else the top-level children (MONAI's UNet). Only the
instance's ``forward`` is replaced, so state dicts are unchanged.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_units", "enable_activation_checkpointing"]

_FLAG = "_nasmed_checkpointed"


def _checkpointed_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    plain = type(self).forward
    if self.training and torch.is_grad_enabled():
        return checkpoint(plain, self, *args, use_reentrant=False, **kwargs)
    return plain(self, *args, **kwargs)


def checkpoint_units(model: nn.Module) -> list[nn.Module]:
    """The default units: entries of the shallowest module lists/dicts, else the children."""
    level: list[nn.Module] = [model]
    while level:
        found = [
            unit
            for module in level
            for child in module.children()
            if isinstance(child, (nn.ModuleList, nn.ModuleDict))
            for unit in child.children()
        ]
        if found:
            return found
        level = [c for m in level for c in m.children()]
    return [c for c in model.children() if any(True for _ in c.parameters())]


def enable_activation_checkpointing(
    model: nn.Module, units: Callable[[nn.Module], list[nn.Module]] = checkpoint_units
) -> int:
    """Checkpoint the units of ``model`` (see the module docs); returns how many."""
    chosen = units(model)
    for unit in chosen:
        if not getattr(unit, _FLAG, False):
            unit.forward = types.MethodType(_checkpointed_forward, unit)
            setattr(unit, _FLAG, True)
    return len(chosen)
