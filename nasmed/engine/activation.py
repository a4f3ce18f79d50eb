"""Activation checkpointing: recompute blocks' activations in the backward pass.

:func:`enable_activation_checkpointing` makes each *unit* of a network run under
:func:`torch.utils.checkpoint.checkpoint` (non-reentrant, RNG state preserved) while it trains
with gradients on: the unit keeps only its inputs for the backward pass and recomputes the rest,
trading about one more forward pass for the memory of its inner activations. The gradients are
those of the plain network (to float rounding). Units, by default, are the entries of the
shallowest ``ModuleList``/``ModuleDict`` containers of the network (a cell network's cells,
DynUNet's down- and up-sampling blocks), else the top-level blocks, split while one holds most of
the parameters (MONAI's UNet: its encoder/decoder convolutions level by level). Only the
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


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def checkpoint_units(model: nn.Module) -> list[nn.Module]:
    """The default units: entries of the shallowest module lists/dicts; else (nested
    ``Sequential`` networks such as MONAI's UNet) the top-level blocks, where a block holding
    more than half of the parameters is replaced by its own blocks, until none does."""
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
    total = _params(model)
    units = [c for c in model.children() if _params(c)]
    while True:
        big = next(
            (u for u in units if 2 * _params(u) > total and any(True for _ in u.children())),
            None,
        )
        if big is None:
            return units
        i = units.index(big)
        units[i : i + 1] = [c for c in big.children() if _params(c)]


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
