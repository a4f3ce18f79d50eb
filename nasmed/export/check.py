"""Check an exported network against PyTorch: same logits on inputs of several shapes.

The check runs the network and the export on a batch of one at the training patch and on a
batch of two with the first spatial side doubled (so the batch and spatial axes really are
dynamic). It passes when ``max |export - torch| <= TOLERANCE * max(1, max |torch|)``: an absolute
1e-4 for logits up to 1, relative to the largest logit beyond (float32 sums in another order
differ in proportion to their magnitude).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nasmed.errors import ConfigError

__all__ = ["TOLERANCE", "check_shapes", "compare_outputs"]

TOLERANCE = 1e-4


def check_shapes(in_channels: int, patch: Sequence[int]) -> list[tuple[int, ...]]:
    """The input shapes the check runs: ``(1, C, *patch)`` and ``(2, C, 2*p0, p1, p2)``."""
    p = [int(s) for s in patch]
    return [(1, in_channels, *p), (2, in_channels, 2 * p[0], *p[1:])]


def compare_outputs(
    net: nn.Module,
    exported: Callable[[np.ndarray], np.ndarray],
    shapes: Sequence[tuple[int, ...]],
    *,
    what: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Run ``net`` and ``exported`` on random inputs of ``shapes``; the report for the sidecar.

    Raises:
        ConfigError: an output differs beyond the tolerance, or has another shape.
    """
    gen = torch.Generator().manual_seed(seed)
    worst_abs = 0.0
    worst_ratio = 0.0
    for shape in shapes:
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            ref = net(x).float().numpy()
        got = np.asarray(exported(x.numpy()))
        if got.shape != ref.shape:
            raise ConfigError(
                f"{what}: output shape {got.shape} for input {shape}, torch {ref.shape}"
            )
        diff = float(np.max(np.abs(got - ref)))
        scale = max(1.0, float(np.max(np.abs(ref))))
        worst_abs = max(worst_abs, diff)
        worst_ratio = max(worst_ratio, diff / scale)
        if diff > TOLERANCE * scale:
            raise ConfigError(
                f"{what}: outputs differ from PyTorch by {diff:.3g} on input {shape} "
                f"(allowed {TOLERANCE:g} x {scale:.3g}); not written"
            )
    return {
        "tolerance": TOLERANCE,
        "criterion": "max|export - torch| <= tolerance * max(1, max|torch|)",
        "checked_input_shapes": [list(s) for s in shapes],
        "max_abs_diff": worst_abs,
        "max_scaled_diff": worst_ratio,
        "checked_on": "cpu",
    }
