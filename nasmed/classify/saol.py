"""Output layers: SAOL (spatially attentive output layer) and GAP + FC behind one interface.

SAOL (Kim, Baek, Kim, CVPR 2020) replaces global average pooling and the fully connected layer:

* spatial logits ``Y`` (K x H x W): a 1x1 convolution of the intermediate (third) stage plus one
  of the last stage resized (bilinear) to the intermediate map's size;
* spatial attention ``A`` (H x W): two convolutions (1x1 -> BN -> ReLU -> 3x3) over the two maps
  (the last one resized), softmax over the H*W locations, so ``A`` sums to 1;
* output ``y_k = sum_ij A_ij Y_k,ij`` (:func:`attention_pool`).

The attention's last convolution and the intermediate logits start at zero, so an untrained SAOL
head computes what GAP + FC would (uniform attention over the last stage's logits, upsampled).
Because ``Y`` is the sum of one logit map per stage, each stage also gives its own pooled output
``sum_ij A_ij Y^s_k,ij``; self-distillation (:mod:`nasmed.classify.selfsup`) uses them.
Both heads return a :class:`HeadOutput`; :class:`Classifier` joins a backbone and a head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nasmed.classify.backbones import BackboneSpec, ResNet2d
from nasmed.errors import ConfigError

__all__ = [
    "HEADS",
    "Classifier",
    "GapHead",
    "HeadOutput",
    "SaolHead",
    "attention_pool",
    "build_classifier",
]

HEADS = ("saol", "gap")


@dataclass
class HeadOutput:
    """What an output layer returns.

    Attributes:
        logits: (B, K) class scores.
        spatial_logits: (B, K, H, W) per-location scores (SAOL), or None (GAP).
        attention: (B, H, W) attention, summing to 1 over locations (SAOL), or None (GAP).
        stage_logits: (B, K) pooled scores of each fused stage alone (SAOL), else empty.
    """

    logits: torch.Tensor
    spatial_logits: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    stage_logits: tuple[torch.Tensor, ...] = ()


def attention_pool(spatial_logits: torch.Tensor, attention_logits: torch.Tensor) -> torch.Tensor:
    """``y_k = sum_ij softmax(a)_ij Y_k,ij`` for (B, K, H, W) logits and (B, H, W) scores."""
    b = attention_logits.shape[0]
    attn = torch.softmax(attention_logits.reshape(b, -1), dim=1)
    return torch.einsum("bkn,bn->bk", spatial_logits.flatten(2), attn)


class SaolHead(nn.Module):
    """Spatially attentive output layer over the last and the intermediate (third) stage.

    Args:
        in_channels: channels of every backbone stage (the last two are used).
        num_classes: K.
        attention_channels: width of the attention branch's hidden layer.
    """

    def __init__(
        self, in_channels: tuple[int, ...], num_classes: int, attention_channels: int = 64
    ) -> None:
        super().__init__()
        c_mid, c_last = in_channels[-2], in_channels[-1]
        self.num_classes = num_classes
        # One 1x1 convolution per stage gives both its K logit maps and its share of the
        # attention's first (1x1) layer: conv1x1([mid, up(last)]) = conv(mid) + up(conv(last)),
        # since bilinear resizing is linear per channel. Resizing K + A channels instead of the
        # last stage's features, and no concatenation, keeps the head cheap.
        self.proj_mid = nn.Conv2d(c_mid, num_classes + attention_channels, 1)
        self.proj_last = nn.Conv2d(c_last, num_classes + attention_channels, 1, bias=False)
        score = nn.Conv2d(attention_channels, 1, 3, padding=1)
        self.attention = nn.Sequential(
            nn.BatchNorm2d(attention_channels), nn.ReLU(inplace=True), score
        )
        # Start as GAP + FC: uniform attention, logits from the last stage only; training then
        # learns where to look and what the intermediate stage adds.
        assert score.bias is not None
        nn.init.zeros_(score.weight)
        nn.init.zeros_(score.bias)
        nn.init.zeros_(self.proj_mid.weight[:num_classes])

    def forward(self, feats: list[torch.Tensor]) -> HeadOutput:
        mid, last = feats[-2], feats[-1]
        k = self.num_classes
        p_mid = self.proj_mid(mid)
        p_last = F.interpolate(
            self.proj_last(last), size=mid.shape[-2:], mode="bilinear", align_corners=False
        )
        y_mid, y_last = p_mid[:, :k], p_last[:, :k]
        spatial = y_mid + y_last
        a_logits = self.attention(p_mid[:, k:] + p_last[:, k:])[:, 0]
        b = a_logits.shape[0]
        attn = torch.softmax(a_logits.reshape(b, -1), dim=1).reshape_as(a_logits)
        logits = (spatial * attn[:, None]).sum(dim=(2, 3))
        stages = tuple((y * attn[:, None]).sum(dim=(2, 3)) for y in (y_mid, y_last))
        return HeadOutput(logits, spatial, attn, stages)


class GapHead(nn.Module):
    """Global average pooling of the last stage, then a fully connected layer."""

    def __init__(self, in_channels: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels[-1], num_classes)

    def forward(self, feats: list[torch.Tensor]) -> HeadOutput:
        return HeadOutput(self.fc(feats[-1].mean(dim=(2, 3))))


class Classifier(nn.Module):
    """A backbone and an output layer; ``forward`` returns a :class:`HeadOutput`."""

    def __init__(self, backbone: ResNet2d, head: nn.Module, head_name: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.head_name = head_name

    def forward(self, x: torch.Tensor) -> HeadOutput:
        out: HeadOutput = self.head(self.backbone(x))
        return out


def build_classifier(spec: BackboneSpec, num_classes: int, head: str = "saol") -> Classifier:
    """A :class:`ResNet2d` of ``spec`` with a ``"saol"`` or ``"gap"`` head for K classes."""
    if num_classes < 1:
        raise ConfigError(f"a classifier needs at least one class, got {num_classes}")
    backbone = ResNet2d(spec)
    if head == "saol":
        mod: nn.Module = SaolHead(backbone.out_channels, num_classes, min(64, 2 * spec.width))
    elif head == "gap":
        mod = GapHead(backbone.out_channels, num_classes)
    else:
        raise ConfigError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
    return Classifier(backbone, mod, head)
