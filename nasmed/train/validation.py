"""Validation Dice on preprocessed cases: sliding-window inference + MONAI ``DiceMetric``.

Works with any network mapping ``(B, C, *patch)`` to ``(B, K, *patch)`` logits. Each cached case
(``WORK_DIR/cache``) is predicted whole with :func:`monai.inferers.sliding_window_inference`
(Gaussian-weighted windows of ``patch``; MONAI pads cases smaller than the patch), the argmax is
compared with the cached label, and Dice is reported per foreground class and as their mean.

A class absent from a case's label is skipped for that case (MONAI's ``ignore_empty``); a class
absent from every case has Dice ``nan`` and does not enter the mean.

Under ``torchrun`` (DDP) the cases are split over the ranks (:func:`nasmed.distributed.shard`),
each rank scores its share and the per-case scores are gathered, so every rank returns the
scores of all cases, in their order, after predicting only its part.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from torch import nn

from decathlon.errors import DatasetError
from decathlon.preprocess import load_cached_case
from nasmed.distributed import gather_objects, shard

__all__ = ["logits_only", "predict_cached", "validate_dice"]

log = logging.getLogger(__name__)


def validate_dice(
    net: nn.Module,
    cache_dir: str | os.PathLike[str],
    cases: Sequence[str],
    patch: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    num_classes: int,
    sw_batch_size: int = 1,
    overlap: float = 0.25,
) -> dict[str, Any]:
    """Mean foreground Dice of ``net`` on cached cases.

    The network is used as it is (its train/eval mode is left alone; call ``net.eval()`` first)
    under ``torch.no_grad()``; nothing is written.

    Args:
        net: the network, on ``device``.
        cache_dir: the preprocessed cache (``WORK_DIR/cache``).
        cases: names of the cached cases to score (each must have a label).
        patch: the sliding window's size.
        device: where the network runs.
        num_classes: classes of the network's output, background included.
        sw_batch_size: windows per forward pass.
        overlap: overlap of neighbouring windows (0 to < 1).

    Returns:
        ``{"dice": mean over the foreground classes, "per_class": {"1": dice, ...}}``
        (``nan`` where nothing could be scored).

    Raises:
        DatasetError: a case is not in the cache or has no label.
        ValueError: ``num_classes < 2``, an empty case list, or a bad overlap.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + foreground), got {num_classes}")
    if not cases:
        raise ValueError("no validation cases")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    indices = shard(range(len(cases)))  # this rank's share (all of them alone)
    mine = [cases[i] for i in indices]
    rows: list[tuple[int, list[float]]] = []
    for index, (_, pred, seg) in zip(
        indices,
        predict_cached(
            net, cache_dir, mine, patch, device=device, sw_batch_size=sw_batch_size, overlap=overlap
        ),
    ):
        p = torch.from_numpy(pred.astype(np.int64))[None, None]
        label = torch.from_numpy(seg.astype(np.int64))[None, None]
        dice = compute_dice(
            one_hot(p, num_classes),
            one_hot(label, num_classes),
            include_background=False,
            ignore_empty=True,
        )
        rows.append((index, [float(v) for v in dice[0]]))
    gathered = sorted(row for part in gather_objects(rows) for row in part)
    scores = torch.tensor([r for _, r in gathered], dtype=torch.float64).reshape(
        len(gathered), num_classes - 1
    )
    per_class: dict[str, float] = {}
    for k in range(num_classes - 1):
        column = scores[:, k]
        valid = column[~torch.isnan(column)]
        per_class[str(k + 1)] = float(valid.mean()) if valid.numel() else math.nan
    finite = [v for v in per_class.values() if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.nan
    log.debug("validation Dice %.4f on %d cases (%s)", mean, len(cases), per_class)
    return {"dice": mean, "per_class": per_class}


def predict_cached(
    net: nn.Module,
    cache_dir: str | os.PathLike[str],
    cases: Sequence[str],
    patch: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    sw_batch_size: int = 1,
    overlap: float = 0.25,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, predicted labels (X, Y, Z), reference labels (X, Y, Z))`` of each cached case,
    predicted whole by Gaussian sliding windows of ``patch`` under ``torch.no_grad()``.

    Raises:
        DatasetError: a case is not in the cache or has no label.
    """
    dev = torch.device(device)
    roi = tuple(int(p) for p in patch)
    with torch.no_grad():
        for name in cases:
            image, seg, _ = load_cached_case(cache_dir, name, mmap=False)
            if seg is None:
                raise DatasetError(f"{cache_dir}: case {name!r} has no label to validate against")
            x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(dev)
            logits = sliding_window_inference(
                x, roi, sw_batch_size, logits_only(net), overlap=overlap, mode="gaussian"
            )
            assert isinstance(logits, torch.Tensor)
            pred = logits.argmax(dim=1).cpu().numpy()[0].astype(np.int16)
            yield name, pred, np.asarray(seg[0], dtype=np.int16)


def logits_only(net: nn.Module | Callable[[torch.Tensor], Any]) -> Any:
    """``net`` as a function returning one tensor (the full-resolution output under deep
    supervision)."""

    def run(x: torch.Tensor) -> torch.Tensor:
        out = net(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out

    return run
