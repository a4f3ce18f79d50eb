"""Segmentation losses: MONAI's Dice + cross-entropy, with optional deep supervision."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["DeepSupervisionLoss", "deep_supervision_weights", "make_seg_loss"]


def make_seg_loss(*, batch: bool = True) -> nn.Module:
    """Dice + CE on softmax logits ``(B, K, ...)`` against integer labels ``(B, 1, ...)``.

    nnU-Net v2's ``DC_and_CE_loss`` (``do_bg=False``, smooth 1e-5): soft Dice of the foreground
    classes plus cross-entropy, equally weighted (MONAI ``DiceCELoss``; its ``1 - Dice`` has
    nnU-Net's ``-Dice`` gradient). ``batch``: nnU-Net's ``batch_dice``, one Dice over the whole
    batch; ``False``: one per patch, averaged.
    """
    return DiceCELoss(
        to_onehot_y=True,
        softmax=True,
        batch=batch,
        include_background=False,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
    )


def deep_supervision_weights(outputs: int) -> list[float]:
    """nnU-Net v2's weights for ``outputs`` scales, highest resolution first.

    ``1 / 2**i``, the lowest resolution's set to 0 (``nnUNetTrainer._build_loss``), normalised
    to sum to one; one output gets weight 1.
    """
    if outputs <= 1:
        return [1.0]
    weights = [0.5**i for i in range(outputs - 1)] + [0.0]
    total = sum(weights)
    return [w / total for w in weights]


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over several output scales (nnU-Net's deep supervision).

    Lower-resolution outputs are compared with the label downsampled by nearest neighbour;
    weights are :func:`deep_supervision_weights` (halving per scale, the lowest scale unused);
    a scale of weight 0 is not scored (its head gets a zero gradient, so DDP sees it used).
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = deep_supervision_weights(len(outputs))
        value = outputs[0].new_zeros(())
        for w, out in zip(weights, outputs):
            if w == 0:  # keep its head in the graph (DDP wants every parameter used)
                value = value + 0.0 * out.sum()
                continue
            t = target
            if out.shape[2:] != target.shape[2:]:
                t = nn.functional.interpolate(
                    target.float(), size=out.shape[2:], mode="nearest"
                ).long()
            value = value + w * self.loss(out, t)
        return value
