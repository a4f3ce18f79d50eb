"""Names of the built-in baseline architectures (plain data, no torch: the CLI's choices)."""

from __future__ import annotations

__all__ = ["BASELINES"]

#: ``--arch`` names of the MONAI baselines (:mod:`nasmed.models.baselines`).
BASELINES = ("unet", "dynunet")
