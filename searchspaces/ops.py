"""The vocabulary of candidate operations a space may name (torch-free).

The operations themselves live in :mod:`nasmed.ops` (a registry of torch modules with declared
costs). This module only knows their names and one-line descriptions, so a space can be validated
and described without importing torch. ``nasmed.ops.register_op`` adds a new name here, so an
operation registered by a user becomes valid in spaces loaded afterwards.
"""

from __future__ import annotations

__all__ = ["BUILTIN_OPS", "declare_op", "known_ops"]

#: The built-in candidate set (see docs/search.md for the choice).
BUILTIN_OPS: dict[str, str] = {
    "conv3": "3x3x3 convolution",
    "p3d331": "pseudo-3D: 3x3x1 then 1x1x3 convolution",
    "p3d313": "pseudo-3D: 3x1x3 then 1x3x1 convolution",
    "p3d133": "pseudo-3D: 1x3x3 then 3x1x1 convolution",
    "dil3": "3x3x3 convolution, dilation 2",
    "dw3": "depthwise-separable: 3x3x3 depthwise then 1x1x1 pointwise",
    "conv1": "1x1x1 convolution",
    "identity": "identity (skip)",
    "zero": "zero (no connection)",
}

_OPS: dict[str, str] = dict(BUILTIN_OPS)


def declare_op(name: str, description: str = "") -> None:
    """Make ``name`` a valid operation name for spaces (called by ``nasmed.ops.register_op``)."""
    _OPS[name] = description or _OPS.get(name, name)


def known_ops() -> dict[str, str]:
    """Every operation name a space may use, with its description."""
    return dict(_OPS)
