"""Figures of a classify run: the ALC learning curve and attention maps over slices (Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from decathlon.fsutil import atomic_open
from nasmed.classify.alc import transform_time

__all__ = ["plot_alc", "save_attention_maps"]


def plot_alc(
    path: str | os.PathLike[str],
    times: Sequence[float],
    scores: Sequence[float],
    budget: float,
    value: float,
) -> None:
    """Plot the step curve of ``scores`` (2*AUC-1) over the log-scaled time, area shaded."""
    xs = [0.0] + [transform_time(t, budget) for t in times] + [1.0]
    ys = [0.0, *scores, scores[-1] if scores else 0.0]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.step(xs, ys, where="post", color="C0")
    ax.fill_between(xs, ys, step="post", alpha=0.25, color="C0")
    ax.scatter(xs[1:-1], ys[1:-1], color="C0", s=12, zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(min(0.0, *ys) - 0.05, 1.0)
    ax.set_xlabel(f"log-scaled time  log(1+t/60)/log(1+{budget:g}/60)")
    ax.set_ylabel("2*AUC - 1")
    ax.set_title(f"ALC = {value:.4f}")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def save_attention_maps(
    folder: str | os.PathLike[str],
    images: np.ndarray,
    attention: np.ndarray,
    names: Sequence[str],
    titles: Sequence[str],
) -> list[Path]:
    """One PNG per slice: the first channel in grey, the attention stretched over it."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(3, 3))  # one figure, redrawn: much cheaper than one each
    for img, att, name, title in zip(images, attention, names, titles):
        h, w = img.shape[-2:]
        ax.clear()
        ax.imshow(img[0].T, cmap="gray", origin="lower")
        ax.imshow(
            att.T,
            cmap="jet",
            alpha=0.4,
            origin="lower",
            interpolation="bilinear",
            extent=(-0.5, w - 0.5, -0.5, h - 0.5),
        )
        ax.set_title(title, fontsize=7)
        ax.axis("off")
        path = out / f"{name}.png"
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=80)
        paths.append(path)
    plt.close(fig)
    return paths
