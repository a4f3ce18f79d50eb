"""nnU-Net's batch Dice + CE over the *global* batch of all ranks.

``nasmed.train.losses.make_seg_loss(batch=True)`` is MONAI's ``DiceCELoss`` with ``batch=True``:
the soft Dice of each foreground class is computed over the whole batch (one intersection and
one denominator per class). (With ``batch=False``, per-patch Dice, the ranks' local losses
already average to the global one, and the strategy keeps them.) Under DDP each rank holds
part of the batch, so per-rank batch-Dice terms would differ from the one-process loss.
:class:`GlobalBatchDiceCELoss` sums the per-class statistics over ranks with a differentiable
all-reduce first; with gradients averaged over ranks afterwards (DDP, or
:func:`nasmed.distributed.all_reduce_gradients`) the update equals the one-process update:

- each rank's Dice term is the global one, and the all-reduce's backward sums the ranks'
  incoming gradients, so rank ``r``'s gradient is ``N * dDice/dI * dI_r/dtheta``; averaging over
  the N ranks gives ``sum_r dDice/dI * dI_r/dtheta``, the global gradient;
- cross-entropy is a mean over voxels; with equal local batches the mean of the ranks' means is
  the global mean, and so is the mean of their gradients.

In one process it is exactly ``make_seg_loss()`` (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.utils import one_hot
from torch import nn

from nasmed.distributed import is_distributed

__all__ = ["GlobalBatchDiceCELoss"]


def _sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return t
    from torch.distributed.nn.functional import all_reduce

    out: torch.Tensor = all_reduce(t)
    return out


class GlobalBatchDiceCELoss(nn.Module):
    """Soft Dice of the foreground classes over the global batch + cross-entropy, weights 1 and 1.

    Takes logits ``(B, K, ...)`` and integer labels ``(B, 1, ...)`` like
    :func:`~nasmed.train.losses.make_seg_loss`.

    Args:
        smooth_nr: added to the Dice numerator.
        smooth_dr: added to the Dice denominator.
    """

    def __init__(self, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5) -> None:
        super().__init__()
        self.smooth_nr = smooth_nr
        self.smooth_dr = smooth_dr

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        classes = logits.shape[1]
        prob = torch.softmax(logits, dim=1)
        onehot = one_hot(target, num_classes=classes, dtype=prob.dtype)
        dims = [0, *range(2, logits.ndim)]
        stats = torch.stack(
            [(prob * onehot).sum(dims), onehot.sum(dims), prob.sum(dims)]
        )  # (3, K): intersection, ground truth, prediction
        inter, truth, pred = _sum_over_ranks(stats)
        dice = 1.0 - (2.0 * inter + self.smooth_nr) / (truth + pred + self.smooth_dr)
        labels = target[:, 0] if target.shape[1] == 1 else target
        ce = F.cross_entropy(logits, labels.long())
        return dice[1:].mean() + ce  # nnU-Net's do_bg=False
