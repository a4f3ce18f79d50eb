"""AutoCLINT's rules from the data (input size, batch size, multi-label) and its prediction.

Plain functions of :mod:`nasmed.classify.autoclint` (REFERENCE §5), kept apart from its trainer.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nasmed.classify.alc import class_aucs
from nasmed.classify.saol import Classifier

__all__ = ["auto_batch_size", "auto_input_size", "is_multilabel", "mean_auc", "predict"]


def auto_input_size(shapes: list[tuple[int, int]]) -> int:
    """Median slice side capped at 64 (128 when slices are elongated), multiple of 16, >= 16."""
    sides = np.asarray(shapes, dtype=np.float64)
    median = np.median(sides, axis=0)
    elongated = median.max() >= 2 * median.min()
    cap = 128 if elongated else 64
    return int(max(16, (min(cap, median.max()) // 16) * 16))


def auto_batch_size(input_size: int, n_train: int) -> int:
    """64 up to 32 px, 32 up to 64, else 16; at most a quarter of the set (>= 4); a power of 2."""
    cap = 64 if input_size <= 32 else 32 if input_size <= 64 else 16
    quarter = max(4, n_train // 4)
    return int(min(cap, 2 ** int(math.log2(quarter))))


def is_multilabel(targets: np.ndarray) -> bool:
    """Multi-class only when every row has exactly one positive."""
    return not bool(np.all(targets.sum(axis=1) == 1))


def predict(
    model: Classifier, x: torch.Tensor, multilabel: bool, batch: int = 128, tta: bool = True
) -> np.ndarray:
    """Class probabilities of (N, C, H, W) slices, averaged with the horizontal flip if ``tta``."""
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = x[i : i + batch]
            logits = model(xb).logits
            p = torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)
            if tta:
                lf = model(xb.flip(-1)).logits
                p = (p + (torch.sigmoid(lf) if multilabel else torch.softmax(lf, 1))) / 2
            outs.append(p.float().cpu())
    model.train()
    return torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)


def mean_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    aucs = [a for a in class_aucs(labels, probs) if not math.isnan(a)]
    return float(np.mean(aucs)) if aucs else math.nan
