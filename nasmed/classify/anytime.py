"""The anytime record of an AutoCLINT run: timestamped test predictions and the run's result.

Each prediction is written as ``anytime/pred_KKK.npy`` (atomic) with a row of
``anytime/index.csv`` (index, seconds, file, score).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from decathlon.fsutil import atomic_save_npy
from nasmed.classify.autoaugment.policy import Policy

__all__ = ["AnytimePrediction", "ClintResult", "write_anytime"]


@dataclass
class AnytimePrediction:
    """A test prediction and when it was made (seconds since the clock started)."""

    seconds: float
    probs: np.ndarray
    score: float | None = None


@dataclass
class ClintResult:
    """What :meth:`AutoClint.run` returns."""

    predictions: list[AnytimePrediction]
    final_probs: np.ndarray | None
    best_val: float
    epochs: int
    steps: int
    alc: float | None
    policy: Policy
    log: list[dict[str, float]]
    search: dict[str, float] = field(default_factory=dict)


def write_anytime(folder: Path, index: int, rec: AnytimePrediction) -> None:
    """Write prediction ``index`` into ``folder`` and append its row to ``index.csv``."""
    atomic_save_npy(folder / f"pred_{index:03d}.npy", rec.probs.astype(np.float32))
    new = not (folder / "index.csv").exists()
    with open(folder / "index.csv", "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["index", "seconds", "file", "score"])
        score = "" if rec.score is None else f"{rec.score:.6f}"
        w.writerow([index, f"{rec.seconds:.3f}", f"pred_{index:03d}.npy", score])
