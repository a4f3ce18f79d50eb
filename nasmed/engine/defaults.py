"""Defaults shared by every fit loop (training, search): one place for each number.

Plain data, no torch: the configs import them and the CLI parses without torch.

nnU-Net's weight decay for SGD (3e-5) and the usual AdamW decay (1e-2) apply to training and to
the search's weight steps alike; the learning rates differ by purpose and stay with their
configs (:class:`~nasmed.train.config.TrainConfig`, :class:`~nasmed.search.config.SearchConfig`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["AMP_DTYPES", "DEFAULT_WEIGHT_DECAY", "ValidateFn", "weight_decay"]

#: Mixed-precision dtypes a config may name (:mod:`nasmed.engine.precision`).
AMP_DTYPES = ("auto", "bf16", "fp16")

#: Weight decay of the network's weights per optimizer name (``"sgd"``, ``"adamw"``).
DEFAULT_WEIGHT_DECAY: Mapping[str, float] = {"sgd": 3e-5, "adamw": 1e-2}

#: Scores a network: returns at least ``{"dice": mean foreground Dice}``; may add per-class
#: values (``{"per_class": {"1": ...}}`` or ``{"dice_1": ...}``).
ValidateFn = Callable[[Any], Mapping[str, Any]]  # (torch.nn.Module) -> scores; torch-free here


def weight_decay(optimizer: Any, given: float | None) -> float:
    """``given``, or the default of ``optimizer`` (a name or a str-valued enum)."""
    if given is not None:
        return float(given)
    return DEFAULT_WEIGHT_DECAY[str(getattr(optimizer, "value", optimizer))]
