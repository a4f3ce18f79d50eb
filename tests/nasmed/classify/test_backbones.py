"""nasmed.classify.backbones: every architecture, any input channels, four stage outputs."""

from __future__ import annotations

import pytest
import torch

from nasmed.classify.backbones import ARCHS, BackboneSpec, create_backbone
from nasmed.errors import ConfigError


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("in_channels", [1, 3])
def test_stage_outputs(arch: str, in_channels: int) -> None:
    net = create_backbone(arch, in_channels, width=4)
    feats = net(torch.randn(2, in_channels, 32, 32))
    assert len(feats) == 4
    for f, c, r in zip(feats, net.out_channels, net.reductions):
        assert f.shape == (2, c, 32 // r, 32 // r)
    assert net.out_channels == (4, 8, 16, 32)


def test_depths_differ() -> None:
    n18 = sum(p.numel() for p in create_backbone("resnet18", 1, 8).parameters())
    n34 = sum(p.numel() for p in create_backbone("resnet34", 1, 8).parameters())
    assert n34 > 1.8 * n18


def test_bad_spec() -> None:
    with pytest.raises(ConfigError):
        BackboneSpec("resnet50")
    with pytest.raises(ConfigError):
        BackboneSpec("resnet18", 0, 8)
