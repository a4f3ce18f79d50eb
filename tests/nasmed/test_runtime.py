from __future__ import annotations

import pytest
import torch

from nasmed.errors import ConfigError
from nasmed.runtime import resolve_device, seed_everything
from nasmed.train.losses import DeepSupervisionLoss, make_seg_loss


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
