"""The files a classify run writes about its test slices: predictions and metrics; and what its
figures are drawn from (:class:`RunFigures`; the drawing is :mod:`nasmed.viz.classify`'s, so
that classification never needs matplotlib)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decathlon.fsutil import atomic_open
from decathlon.slices import SliceSet
from nasmed.classify.alc import class_aucs
from nasmed.classify.saol import Classifier

__all__ = ["RunFigures", "test_metrics", "write_predictions"]


def write_predictions(path: Path, test: SliceSet, probs: np.ndarray, multilabel: bool) -> None:
    """``predictions.csv``: case, slice, then probability, decision and truth of every class.

    Decisions are ``prob >= 0.5`` (multi-label) or the arg-max (multi-class).
    """
    names = list(test.class_names)
    pred = (probs >= 0.5) if multilabel else np.eye(len(names), dtype=bool)[probs.argmax(1)]
    with atomic_open(path, "w") as f:
        w = csv.writer(f)
        w.writerow(
            ["case", "slice"]
            + [f"prob_{n}" for n in names]
            + [f"pred_{n}" for n in names]
            + [f"true_{n}" for n in names]
        )
        for i, case in enumerate(test.slice_cases):
            w.writerow(
                [case, int(test.slice_index[i])]
                + [f"{p:.6f}" for p in probs[i]]
                + [int(v) for v in pred[i]]
                + [int(v) for v in test.targets[i]]
            )


def test_metrics(test: SliceSet, probs: np.ndarray, multilabel: bool) -> dict[str, Any]:
    """AUC per class (None where the test slices hold one value), mean AUC and accuracies.

    Multi-label ``accuracy`` is the share of correct (slice, class) decisions, ``exact_match`` the
    share of slices with every class right; multi-class both are the arg-max accuracy.
    """
    aucs = class_aucs(test.targets, probs)
    valid = [a for a in aucs if not math.isnan(a)]
    if multilabel:
        hits = (probs >= 0.5) == test.targets.astype(bool)
        acc, exact = float(hits.mean()), float(hits.all(axis=1).mean())
    else:
        acc = exact = float((probs.argmax(1) == test.targets.argmax(1)).mean())
    return {
        "auc_per_class": {
            n: (None if math.isnan(a) else a) for n, a in zip(test.class_names, aucs)
        },
        "mean_auc": float(np.mean(valid)) if valid else None,
        "accuracy": acc,
        "exact_match": exact,
        "test_slices": len(test),
        "test_cases": list(test.case_names),
    }


@dataclass(frozen=True)
class RunFigures:
    """What a finished classify run's figures are drawn from (``alc.png``, ``attention/``).

    Attributes:
        out_dir: the run folder.
        model: the trained classifier.
        test: the test slices.
        probs: their predicted probabilities.
        times: seconds of each anytime prediction.
        scores: their scores.
        time_budget: the run's budget (s).
        alc: the area under the learning curve.
        attention_maps: how many attention maps to draw (SAOL only).
        device: where the model runs.
    """

    out_dir: Path
    model: Classifier
    test: SliceSet
    probs: np.ndarray
    times: list[float]
    scores: list[float]
    time_budget: float
    alc: float
    attention_maps: int
    device: torch.device


#: Draws a run's figures; returns the number of attention maps drawn
#: (:func:`nasmed.viz.classify.write_run_figures`, which the CLI passes).
FiguresFn = Callable[[RunFigures], int]
