"""Helpers for tests and examples: a run folder whose network has fixed, seeded weights.

:func:`write_fixed_model` writes ``model.json`` + ``model.pt`` for a MONAI UNet with seeded
random weights (no training), so inference paths (orientation, geometry, misuse of ``predict``)
can be tested in seconds. The network is not symmetric under flips or axis permutations, so a
test that compares orientations can fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from decathlon.plan import ChannelNorm, Plan
from nasmed.models.spec import WEIGHTS_FILE, ModelSpec

__all__ = ["fixed_plan", "write_fixed_model"]


def fixed_plan(
    *,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.5),
    patch: tuple[int, int, int] = (32, 32, 16),
    channels: int = 1,
    classes: int = 1,
) -> Plan:
    """A z-score plan for ``channels`` MR-like channels and ``classes`` foreground classes."""
    return Plan(
        task_name="fixed",
        modalities=tuple(f"MR{i}" for i in range(channels)),
        labels={0: "background", **{k: f"class{k}" for k in range(1, classes + 1)}},
        target_spacing=spacing,
        normalization=tuple(ChannelNorm("zscore") for _ in range(channels)),
        patch_size=patch,
        batch_size=2,
        median_shape_after_resampling=patch,
    )


def write_fixed_model(
    run_dir: str | os.PathLike[str], plan: Plan | None = None, *, seed: int = 0, width: float = 0.5
) -> Path:
    """A finished-looking run folder: ``model.json`` and seeded random ``model.pt``.

    Returns:
        The run folder.
    """
    plan = plan or fixed_plan()
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(
        arch="unet",
        in_channels=plan.num_channels,
        out_channels=plan.num_classes,
        patch=plan.patch_size,
        plan=plan,
        width=width,
        info={"kind": "fixed", "seed": seed},
    )
    torch.manual_seed(seed)
    net = spec.build()
    torch.save(net.state_dict(), run / WEIGHTS_FILE)
    spec.save(run / "model.json")
    return run
