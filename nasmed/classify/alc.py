"""Anytime scoring: ROC AUC, the AutoDL score 2*AUC-1, and the area under the learning curve.

AutoDL (and AutoCLINT, which won it) score a run by its learning curve: each test prediction made
at time ``t`` has a score ``s = 2 * AUC - 1`` (AUC averaged over the classes whose test labels
hold both values); time is rescaled as ``t' = log(1 + t / t0) / log(1 + T / t0)`` (``t0 = 60``
s, ``T`` = the budget) and the curve is a step function: 0 before the first prediction, then
the score of the latest prediction, held until ``t' = 1``. ALC is its area (AutoDL's
``auc_step``). Predictions made after ``T`` do not count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

__all__ = ["alc", "autodl_score", "class_aucs", "roc_auc", "transform_time"]

T0 = 60.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of binary ``labels`` by the rank-sum formula (ties share ranks); nan if one class."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def class_aucs(labels: np.ndarray, scores: np.ndarray) -> list[float]:
    """AUC of each column of (N, K) labels and scores (nan for a column with one value)."""
    return [roc_auc(labels[:, k], scores[:, k]) for k in range(labels.shape[1])]


def autodl_score(labels: np.ndarray, scores: np.ndarray) -> float:
    """``2 * mean AUC - 1`` over the classes with both values present (0 when none has)."""
    aucs = [a for a in class_aucs(labels, scores) if not math.isnan(a)]
    return 2.0 * float(np.mean(aucs)) - 1.0 if aucs else 0.0


def transform_time(t: float, budget: float, t0: float = T0) -> float:
    """``log(1 + t / t0) / log(1 + T / t0)``, clipped to [0, 1]."""
    return min(max(math.log1p(t / t0) / math.log1p(budget / t0), 0.0), 1.0)


def alc(times: Sequence[float], scores: Sequence[float], budget: float, t0: float = T0) -> float:
    """Area under the step learning curve of ``scores`` made at ``times`` (seconds from start)."""
    if len(times) != len(scores):
        raise ValueError("alc: times and scores differ in length")
    points = sorted((float(t), float(s)) for t, s in zip(times, scores) if t <= budget)
    xs = [0.0] + [transform_time(t, budget, t0) for t, _ in points] + [1.0]
    ys = [0.0] + [s for _, s in points]
    return float(sum((xs[i + 1] - xs[i]) * ys[i] for i in range(len(ys))))
