"""Training losses of the classifier: the task loss, CutMix with location-specific targets, and
self-distillation. Each extra is a switch of :class:`LossConfig`; docs/classify.md explains them.

* **Task loss**: multi-label -> class-balanced BCE (``pos_weight = negatives / positives`` per
  class, clipped to [1, 10]); multi-class -> cross-entropy with (possibly soft) targets.
* **CutMix** (``cutmix``): a box of a shuffled partner image is pasted; the global target becomes
  the area-weighted mix ``lam * y_a + (1 - lam) * y_b``.
* **Location-specific self-supervision** (``location``, SAOL only, with CutMix): every location of
  the spatial logits gets its own target, the partner's label inside the pasted box and the
  image's own label outside, and the task loss is applied per location (weight
  ``location_weight``). This teaches the spatial logits *where* each label lives.
* **Self-distillation** (``distill``, SAOL only): the fused, attention-pooled output (detached,
  temperature ``temperature``) teaches the pooled output of each stage's logit map alone
  (``y^s = sum_ij A_ij Y^s_ij``), so the intermediate stage's logits become a classifier in their
  own right and agree with the fused one (KL for multi-class, soft BCE for multi-label).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nasmed.classify.saol import HeadOutput

__all__ = [
    "LossConfig",
    "class_pos_weight",
    "cutmix",
    "location_targets",
    "task_loss",
    "total_loss",
]


@dataclass(frozen=True)
class LossConfig:
    """Switches and weights of the training loss."""

    multilabel: bool = True
    cutmix: bool = False
    cutmix_prob: float = 0.5
    location: bool = False
    location_weight: float = 0.5
    distill: bool = False
    distill_weight: float = 0.5
    temperature: float = 2.0


def class_pos_weight(targets: torch.Tensor) -> torch.Tensor:
    """Per-class ``negatives / positives`` of (N, K) 0/1 targets, clipped to [1, 10]."""
    pos = targets.float().sum(0)
    neg = targets.shape[0] - pos
    return (neg / pos.clamp(min=1.0)).clamp(1.0, 10.0)


def task_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    multilabel: bool,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """BCE (multi-label) or soft-target cross-entropy (multi-class) over dim 1 of any shape."""
    if multilabel:
        pw = None
        if pos_weight is not None:
            pw = pos_weight.reshape((1, -1) + (1,) * (logits.dim() - 2))
        return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=pw)
    return -(target.float() * F.log_softmax(logits, dim=1)).sum(1).mean()


def cutmix(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int, int, int], float]:
    """Paste a random box of a shuffled partner into each image.

    Returns:
        The mixed batch, the targets of the images and of their partners, the box
        ``(top, bottom, left, right)`` in pixels and ``lam``, the share of the image kept.
    """
    b, _, h, w = x.shape
    perm = torch.randperm(b, generator=generator).to(x.device)
    lam = float(torch.rand(1, generator=generator))
    cut = (1.0 - lam) ** 0.5
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(h, (1,), generator=generator))
    cx = int(torch.randint(w, (1,), generator=generator))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return mixed, y, y[perm], (top, bottom, left, right), lam


def location_targets(
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    box: tuple[int, int, int, int],
    image_hw: tuple[int, int],
    grid_hw: tuple[int, int],
) -> torch.Tensor:
    """(B, K, h, w) targets: ``y_b`` where a location's centre is in the box, else ``y_a``."""
    top, bottom, left, right = box
    (h_img, w_img), (gh, gw) = image_hw, grid_hw
    cy = (torch.arange(gh, device=y_a.device) + 0.5) * h_img / gh
    cx = (torch.arange(gw, device=y_a.device) + 0.5) * w_img / gw
    inside = ((cy >= top) & (cy < bottom))[:, None] & ((cx >= left) & (cx < right))[None, :]
    ya, yb = y_a.float()[:, :, None, None], y_b.float()[:, :, None, None]
    return torch.where(inside[None, None], yb, ya)


def _distill(student: torch.Tensor, teacher: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    t = cfg.temperature
    if cfg.multilabel:
        soft = torch.sigmoid(teacher / t)
        return F.binary_cross_entropy_with_logits(student / t, soft) * t * t
    return (
        F.kl_div(
            F.log_softmax(student / t, 1),
            F.log_softmax(teacher / t, 1),
            log_target=True,
            reduction="batchmean",
        )
        * t
        * t
    )


def total_loss(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: LossConfig,
    generator: torch.Generator,
    pos_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One training batch's loss; also the logits when the batch was not mixed (for train AUC)."""
    mixed = cfg.cutmix and float(torch.rand(1, generator=generator)) < cfg.cutmix_prob
    if not mixed:
        out: HeadOutput = model(x)
        loss = task_loss(out.logits, y, cfg.multilabel, pos_weight)
        loss = loss + _extras(out, cfg)
        return loss, out.logits.detach()
    xm, ya, yb, box, lam = cutmix(x, y, generator)
    out = model(xm)
    target = lam * ya.float() + (1.0 - lam) * yb.float()
    loss = task_loss(out.logits, target, cfg.multilabel, pos_weight)
    if cfg.location and out.spatial_logits is not None:
        grid = (out.spatial_logits.shape[2], out.spatial_logits.shape[3])
        loc = location_targets(ya, yb, box, (x.shape[2], x.shape[3]), grid)
        loc_loss = task_loss(out.spatial_logits, loc, cfg.multilabel, pos_weight)
        loss = loss + cfg.location_weight * loc_loss
    return loss + _extras(out, cfg), None


def _extras(out: HeadOutput, cfg: LossConfig) -> torch.Tensor:
    if not (cfg.distill and out.stage_logits):
        return out.logits.new_zeros(())
    teacher = out.logits.detach()
    parts = [_distill(s, teacher, cfg) for s in out.stage_logits]
    return cfg.distill_weight * torch.stack(parts).mean()
