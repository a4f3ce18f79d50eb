"""2D ResNet backbones (BasicBlock: ResNet-18 and ResNet-34) that return every stage's features.

Written for nasmed rather than taken from torchvision: any number of input channels (CT has one,
multi-modal MR several), a width knob for tiny test networks, and a stem suited to the small inputs
of slice classification (a stride-2 3x3 convolution, no max-pool, total stride 16: a 64x64 slice
ends as a 4x4 map, its intermediate stage as 8x8). :meth:`ResNet2d.forward` returns the four stage
outputs, the last one last, so an output layer can fuse intermediate maps (SAOL does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nasmed.errors import ConfigError

__all__ = ["ARCHS", "BackboneSpec", "BasicBlock", "ResNet2d", "create_backbone"]

# Blocks per stage of each architecture of the family.
ARCHS: dict[str, tuple[int, int, int, int]] = {
    "resnet10": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}


@dataclass(frozen=True)
class BackboneSpec:
    """Everything needed to rebuild a backbone (and to check a checkpoint fits it).

    Args:
        arch: a key of :data:`ARCHS`.
        in_channels: image channels (modalities).
        width: channels of the first stage; the stages have width x (1, 2, 4, 8).
    """

    arch: str = "resnet18"
    in_channels: int = 1
    width: int = 64

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown backbone {self.arch!r}; choose from {', '.join(ARCHS)}")
        if self.in_channels < 1 or self.width < 1:
            raise ConfigError(f"backbone needs in_channels >= 1 and width >= 1, got {self}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class ResNet2d(nn.Module):
    """A BasicBlock ResNet whose forward returns the feature maps of its four stages.

    Args:
        spec: architecture, input channels and width.
    """

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.spec = spec
        w = spec.width
        self.stem = nn.Sequential(
            nn.Conv2d(spec.in_channels, w, 3, 2, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
        )
        widths = (w, 2 * w, 4 * w, 8 * w)
        stages = []
        cin = w
        for i, (n, cout) in enumerate(zip(ARCHS[spec.arch], widths)):
            blocks = [BasicBlock(cin, cout, 1 if i == 0 else 2)]
            blocks += [BasicBlock(cout, cout) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.out_channels: tuple[int, ...] = widths
        self.reductions: tuple[int, ...] = (2, 4, 8, 16)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: starts as identity
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage outputs, shallow to deep: strides 2, 4, 8, 16 of the input."""
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def create_backbone(arch: str = "resnet18", in_channels: int = 1, width: int = 64) -> ResNet2d:
    """Build a backbone of :data:`ARCHS` (``resnet18``, ``resnet34``; ``resnet10`` for tests)."""
    return ResNet2d(BackboneSpec(arch, in_channels, width))
