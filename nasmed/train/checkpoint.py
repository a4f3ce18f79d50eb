"""Checkpoints: the versioned schema of :mod:`nasmed.engine.checkpoint` (re-exported here)."""

from __future__ import annotations

from nasmed.engine.checkpoint import (
    load_checkpoint,
    load_model_state,
    make_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from nasmed.engine.rng import capture_rng, restore_rng

__all__ = [
    "capture_rng",
    "load_checkpoint",
    "load_model_state",
    "make_checkpoint",
    "restore_checkpoint",
    "restore_rng",
    "save_checkpoint",
]
