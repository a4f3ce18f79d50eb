"""The files a classify run writes about its test slices: predictions, metrics, attention maps."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decathlon.fsutil import atomic_open
from decathlon.slices import SliceSet
from nasmed.classify.alc import class_aucs
from nasmed.classify.saol import Classifier

__all__ = ["test_metrics", "write_attention_maps", "write_predictions"]


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


def write_attention_maps(
    model: Classifier, test: SliceSet, n: int, device: torch.device, folder: Path, probs: np.ndarray
) -> int:
    """Attention PNGs of up to ``n`` test slices showing a class (SAOL only); returns the count."""
    from nasmed.viz.classify import plot_attention
    from nasmed.viz.figure import save_png

    folder.mkdir(parents=True, exist_ok=True)
    if model.head_name != "saol" or n <= 0 or len(test) == 0:
        return 0
    fg = np.flatnonzero(test.targets.any(axis=1))
    pool = fg if len(fg) else np.arange(len(test))
    pick = pool[np.linspace(0, len(pool) - 1, min(n, len(pool))).astype(int)]
    model.eval()
    with torch.no_grad():
        att = model(torch.from_numpy(test.images[pick]).to(device)).attention
    assert att is not None
    cases = test.slice_cases
    names = [f"{cases[i]}_slice{int(test.slice_index[i]):03d}" for i in pick]
    titles = [
        ", ".join(
            f"{c} {p:.2f}/{t}" for c, p, t in zip(test.class_names, probs[i], test.targets[i])
        )
        for i in pick
    ]
    maps = att.cpu().numpy()
    masks = None if test.masks is None else test.masks[pick]
    for j, (name, title) in enumerate(zip(names, titles)):
        fig = plot_attention(
            test.images[pick[j] : pick[j] + 1],
            maps[j : j + 1],
            titles=[title],
            masks=None if masks is None else masks[j : j + 1],
        )
        save_png(fig, folder / f"{name}.png", dpi=80)
    return len(pick)
