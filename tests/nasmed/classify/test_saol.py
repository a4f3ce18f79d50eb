"""SAOL and GAP heads, and the self-supervision / self-distillation losses."""

from __future__ import annotations

import math

import pytest
import torch

from nasmed.classify.backbones import BackboneSpec
from nasmed.classify.saol import GapHead, SaolHead, attention_pool, build_classifier
from nasmed.classify.selfsup import LossConfig, cutmix, location_targets, total_loss
from nasmed.errors import ConfigError


def test_saol_output_shapes_and_attention_sums_to_one() -> None:
    model = build_classifier(BackboneSpec("resnet10", 2, 4), num_classes=3, head="saol")
    out = model(torch.randn(5, 2, 32, 32))
    assert out.logits.shape == (5, 3)
    assert out.spatial_logits is not None and out.spatial_logits.shape == (5, 3, 4, 4)
    assert out.attention is not None and out.attention.shape == (5, 4, 4)
    assert torch.allclose(out.attention.sum(dim=(1, 2)), torch.ones(5), atol=1e-6)
    assert bool((out.attention >= 0).all())
    assert len(out.stage_logits) == 2
    pooled = torch.einsum("bkhw,bhw->bk", out.spatial_logits, out.attention)
    assert torch.allclose(out.logits, pooled, atol=1e-6)
    assert torch.allclose(out.logits, out.stage_logits[0] + out.stage_logits[1], atol=1e-5)


def test_attention_pool_by_hand() -> None:
    y = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # B=1, K=1, 2x2
    assert attention_pool(y, torch.zeros(1, 2, 2)).item() == pytest.approx(2.5)
    a = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]])  # softmax -> 1/6, 3/6, 1/6, 1/6
    assert attention_pool(y, a).item() == pytest.approx((1 + 6 + 3 + 4) / 6)


def test_saol_head_by_hand() -> None:
    """Hand-set weights on a 2x2 map: Y = 2*mid + 0.5 + up(last), A = softmax(mid)."""
    head = SaolHead((1, 1, 1, 1), num_classes=1, attention_channels=1).eval()
    with torch.no_grad():
        head.proj_mid.weight.copy_(torch.tensor([2.0, 1.0]).reshape(2, 1, 1, 1))  # logit, hidden
        head.proj_mid.bias.copy_(torch.tensor([0.5, 0.0]))
        head.proj_last.weight.copy_(torch.tensor([1.0, 0.0]).reshape(2, 1, 1, 1))
        score = head.attention[-1]
        score.weight.zero_()
        score.weight[0, 0, 1, 1] = 1.0  # 3x3 kernel: centre only, so the score is relu(hidden)
    mid = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    last = torch.tensor([[[[10.0]]]])  # 1x1 -> bilinear resizing gives 10 everywhere
    out = head([mid, mid, mid, last])
    ys = [2 * v + 0.5 + 10 for v in (1.0, 2.0, 3.0, 4.0)]
    weights = [math.exp(v) for v in (1.0, 2.0, 3.0, 4.0)]  # BN in eval: identity (up to eps)
    expected = sum(w * y for w, y in zip(weights, ys)) / sum(weights)
    assert out.logits.item() == pytest.approx(expected, rel=1e-4)
    assert out.attention is not None
    assert out.attention.flatten().tolist() == pytest.approx(
        [w / sum(weights) for w in weights], rel=1e-4
    )
    assert out.spatial_logits is not None
    assert out.spatial_logits.flatten().tolist() == pytest.approx(ys)


def test_gap_head_same_interface() -> None:
    model = build_classifier(BackboneSpec("resnet10", 1, 4), num_classes=2, head="gap")
    out = model(torch.randn(3, 1, 32, 32))
    assert out.logits.shape == (3, 2) and out.attention is None and out.spatial_logits is None
    head = GapHead((1, 1, 1, 2), 1)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1.0, -1.0]]))
        head.fc.bias.zero_()
    feat = torch.tensor([[[[1.0, 3.0]], [[0.0, 2.0]]]])  # channel means 2 and 1
    assert head([feat, feat, feat, feat]).logits.item() == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        build_classifier(BackboneSpec("resnet10", 1, 4), 2, head="mlp")


def test_location_targets_by_hand() -> None:
    ya, yb = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    t = location_targets(ya, yb, (0, 16, 0, 16), (32, 32), (2, 2))  # box = top-left quarter
    assert t.shape == (1, 2, 2, 2)
    assert t[0, :, 0, 0].tolist() == [0.0, 1.0]
    for i, j in ((0, 1), (1, 0), (1, 1)):
        assert t[0, :, i, j].tolist() == [1.0, 0.0]


def test_cutmix_keeps_shape_and_mixes() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 1, 8, 8).contiguous()
    y = torch.eye(4)
    mixed, ya, yb, (t, b, lft, r), lam = cutmix(x, y, g)
    assert mixed.shape == x.shape and 0.0 <= lam <= 1.0
    assert torch.equal(ya, y) and sorted(yb.argmax(1).tolist()) == [0, 1, 2, 3]
    assert lam == pytest.approx(1 - (b - t) * (r - lft) / 64)
    assert torch.equal(mixed[:, :, :t], x[:, :, :t])


@pytest.mark.parametrize(
    "cfg",
    [
        LossConfig(),
        LossConfig(cutmix=True, cutmix_prob=1.0),
        LossConfig(cutmix=True, cutmix_prob=1.0, location=True),
        LossConfig(distill=True),
        LossConfig(multilabel=False, cutmix=True, cutmix_prob=1.0, location=True, distill=True),
    ],
)
def test_losses_backpropagate(cfg: LossConfig) -> None:
    model = build_classifier(BackboneSpec("resnet10", 1, 4), num_classes=3, head="saol")
    x = torch.randn(4, 1, 32, 32)
    y = torch.eye(3)[torch.tensor([0, 1, 2, 0])] if not cfg.multilabel else torch.rand(4, 3).round()
    loss, logits = total_loss(model, x, y, cfg, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert (logits is None) == cfg.cutmix
    grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None for g in grads)


def test_untrained_saol_equals_gap_fc() -> None:
    """Zero-initialised attention and intermediate logits: SAOL starts as GAP + FC."""
    channels = (4, 8, 16, 32)
    saol_head = SaolHead(channels, num_classes=3).eval()
    gap = GapHead(channels, num_classes=3)
    with torch.no_grad():
        gap.fc.weight.copy_(saol_head.proj_last.weight[:3, :, 0, 0])
        gap.fc.bias.copy_(saol_head.proj_mid.bias[:3])
    feats = [torch.randn(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate(channels)]
    out = saol_head(feats)
    assert out.attention is not None
    assert torch.allclose(out.attention, torch.full_like(out.attention, 1 / 16))
    assert torch.allclose(out.logits, gap(feats).logits, atol=1e-5)
