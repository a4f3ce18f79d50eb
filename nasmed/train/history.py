"""``history.csv`` + TensorBoard: moved to :mod:`nasmed.engine.history` (re-exported here)."""

from __future__ import annotations

from nasmed.engine.history import History, read_history

__all__ = ["History", "read_history"]
