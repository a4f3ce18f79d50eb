"""Segmentation losses: MONAI's Dice + cross-entropy, with optional deep supervision."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DiceCELoss
from torch import nn

__all__ = ["DeepSupervisionLoss", "make_seg_loss"]


def make_seg_loss() -> nn.Module:
    """Dice + CE on softmax logits ``(B, K, ...)`` against integer labels ``(B, 1, ...)``.

    The nnU-Net choice: soft Dice over the batch (background included) plus cross-entropy,
    equally weighted (MONAI ``DiceCELoss``).
    """
    return DiceCELoss(to_onehot_y=True, softmax=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss over several output scales (nnU-Net's deep supervision).

    Lower-resolution outputs are compared with the label downsampled by nearest neighbour;
    weights halve per scale and are normalised to sum to one.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = [0.5**i for i in range(len(outputs))]
        total = sum(weights)
        value = outputs[0].new_zeros(())
        for w, out in zip(weights, outputs):
            t = target
            if out.shape[2:] != target.shape[2:]:
                t = nn.functional.interpolate(
                    target.float(), size=out.shape[2:], mode="nearest"
                ).long()
            value = value + (w / total) * self.loss(out, t)
        return value
