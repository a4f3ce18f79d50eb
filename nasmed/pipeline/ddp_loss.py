"""The global-batch Dice + CE: moved to :mod:`nasmed.engine.ddp_loss` (re-exported here)."""

from __future__ import annotations

from nasmed.engine.ddp_loss import GlobalBatchDiceCELoss

__all__ = ["GlobalBatchDiceCELoss"]
