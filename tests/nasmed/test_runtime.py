from __future__ import annotations

import pytest
import torch

from nasmed.errors import ConfigError
from nasmed.runtime import resolve_device, seed_everything
from nasmed.train.losses import DeepSupervisionLoss, deep_supervision_weights, make_seg_loss


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(ConfigError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_seed_everything_is_deterministic() -> None:
    g1 = seed_everything(3)
    a = (torch.rand(2), torch.rand(2, generator=g1))
    g2 = seed_everything(3)
    b = (torch.rand(2), torch.rand(2, generator=g2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_seg_loss_and_deep_supervision() -> None:
    loss = make_seg_loss()
    target = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    target[:, :, 2:6, 2:6] = 1
    perfect = torch.cat([(target == 0).float(), (target == 1).float()], 1) * 20 - 10
    wrong = -perfect
    assert loss(perfect, target) < 0.05 < loss(wrong, target)
    ds = DeepSupervisionLoss(loss)
    half = torch.nn.functional.interpolate(perfect, scale_factor=0.5)
    assert ds([perfect, half], target) < 0.1
    assert torch.isclose(ds(perfect, target), loss(perfect, target))
    # nnU-Net's weights: halving, the lowest scale unused, normalised
    assert deep_supervision_weights(3) == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert deep_supervision_weights(1) == [1.0]
    assert torch.isclose(ds([perfect, wrong], target), loss(perfect, target))
    assert torch.isclose(
        ds([wrong, perfect, perfect], target),
        loss(wrong, target) * 2 / 3 + loss(perfect, target) / 3,
    )


def test_seg_loss_is_nnunet_dice_ce_without_background() -> None:
    # nnU-Net's DC_and_CE_loss(batch_dice, do_bg=False, smooth 1e-5), written out by hand
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, 4, generator=g)
    target = torch.randint(0, 3, (2, 1, 6, 6, 4), generator=g)
    prob = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).float()
    dims = (0, 2, 3, 4)
    inter, truth, pred = (prob * onehot).sum(dims), onehot.sum(dims), prob.sum(dims)
    dice = (2 * inter + 1e-5) / (truth + pred + 1e-5)
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0])
    expected = ce + 1 - dice[1:].mean()
    assert torch.isclose(make_seg_loss()(logits, target), expected, atol=1e-6)
    assert not torch.isclose(make_seg_loss()(logits, target), ce + 1 - dice.mean(), atol=1e-4)
