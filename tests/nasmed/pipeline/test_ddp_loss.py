"""GlobalBatchDiceCELoss: in one process exactly nasmed's Dice + CE (MONAI DiceCELoss)."""

from __future__ import annotations

import pytest
import torch

from nasmed.pipeline.ddp_loss import GlobalBatchDiceCELoss
from nasmed.train.losses import make_seg_loss


@pytest.mark.parametrize("classes", [2, 4])
def test_equals_the_training_loss_alone(classes: int) -> None:
    logits = torch.randn(3, classes, 6, 5, 4, requires_grad=True)
    label = torch.randint(0, classes, (3, 1, 6, 5, 4))
    label[0] = 0  # a class absent from a sample
    expected = make_seg_loss()(logits, label)
    (g_expected,) = torch.autograd.grad(expected, logits)
    got = GlobalBatchDiceCELoss()(logits, label)
    (g_got,) = torch.autograd.grad(got, logits)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g_got, g_expected, rtol=1e-5, atol=1e-9)
