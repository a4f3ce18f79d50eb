"""The search as pictures: architecture logits as heatmaps over the epochs, and the search's
temperature, entropy, loss and cost curves from ``history.csv``.

The search writes ``RUN_DIR/alphas/epoch_XXXX.json`` after each epoch (the logits, the space's
ops and edges, the temperature ``tau``); :func:`load_alpha_snapshots` reads them back. A heatmap
shows, per edge (row) and operation (column), the probability of the operation
(``softmax`` of the op logits); the row label adds the probability that the edge is kept at all
(its node's input-subset distribution), and a black box marks the decoded choice.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import searchspaces
from nasmed.errors import RunDirError
from nasmed.search.decode import decode
from nasmed.supernet.plans import kept_probabilities
from nasmed.viz.curves import HistoryLike, history_rows, plot_columns
from searchspaces import SearchSpace

__all__ = [
    "AlphaSnapshot",
    "load_alpha_snapshots",
    "op_probabilities",
    "plot_alpha_heatmaps",
    "plot_search_history",
]

_SNAPSHOT = re.compile(r"^epoch_(\d+)\.json$")


@dataclass(frozen=True)
class AlphaSnapshot:
    """The architecture logits after one epoch of a search.

    Attributes:
        epoch: the epoch (0-based).
        tau: the Gumbel-softmax temperature of that epoch.
        space: the search space's name.
        ops: the candidate operations (columns of the op logits).
        edges: ``(source, node)`` of every row.
        logits: ``{key: {"ops": (E, n_ops) array, "inputs": (E,) array}}``.
        space_hash: the space's content hash ("" in snapshots that did not record it).
    """

    epoch: int
    tau: float
    space: str
    ops: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    logits: Mapping[str, Mapping[str, np.ndarray]]
    space_hash: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlphaSnapshot:
        """Parse one ``epoch_XXXX.json`` object."""
        return cls(
            epoch=int(data["epoch"]),
            tau=float(data.get("tau", float("nan"))),
            space=str(data.get("space", "")),
            ops=tuple(str(o) for o in data["ops"]),
            edges=tuple((int(e[0]), int(e[1])) for e in data["edges"]),
            logits={
                str(k): {name: np.asarray(v, dtype=np.float64) for name, v in d.items()}
                for k, d in data["logits"].items()
            },
            space_hash=str(data.get("space_hash", "")),
        )


def load_alpha_snapshots(run_dir: str | os.PathLike[str]) -> list[AlphaSnapshot]:
    """Every ``RUN_DIR/alphas/epoch_XXXX.json``, by epoch.

    Raises:
        RunDirError: the folder has no snapshots, or one is unreadable.
    """
    folder = Path(run_dir) / "alphas"
    files = sorted(p for p in folder.glob("epoch_*.json") if _SNAPSHOT.match(p.name))
    if not files:
        raise RunDirError(f"{folder}: no alphas/epoch_XXXX.json snapshots (is it a search run?)")
    out = []
    for path in files:
        try:
            out.append(AlphaSnapshot.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunDirError(f"{path}: not a readable alpha snapshot ({exc})") from None
    return sorted(out, key=lambda s: s.epoch)


def op_probabilities(op_logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(E, n_ops)`` op logits."""
    z = np.asarray(op_logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(z / z.sum(axis=-1, keepdims=True))


def _space(snapshot: AlphaSnapshot, space: SearchSpace | None) -> SearchSpace | None:
    if space is not None:
        return space
    if snapshot.space not in searchspaces.list_spaces():
        return None  # a space file's: the caller passes the space
    try:
        shipped = searchspaces.load(searchspaces.space_path(snapshot.space))
    except searchspaces.SpaceError:
        return None
    # a space file named as a shipped space, or a shipped space changed since the search
    return shipped if snapshot.space_hash in ("", shipped.content_hash()) else None


def _pick(n: int, most: int) -> list[int]:
    """Up to ``most`` evenly spread indices of ``range(n)``, first and last included."""
    if n <= most:
        return list(range(n))
    return sorted({int(i) for i in np.rint(np.linspace(0, n - 1, most))})


def plot_alpha_heatmaps(
    snapshots: Sequence[AlphaSnapshot],
    *,
    space: SearchSpace | None = None,
    keys: Sequence[str] | None = None,
    max_epochs: int = 4,
) -> Figure:
    """Op probabilities per edge as heatmaps: rows of epochs, columns of architecture keys.

    Args:
        snapshots: from :func:`load_alpha_snapshots` (at least one).
        space: the search space (for the kept-edge probabilities and the decoded choice);
            default the shipped space named in the snapshot, if it has the snapshot's hash.
        keys: architecture keys to show; default all.
        max_epochs: at most this many epochs, evenly spread, first and last included.

    Returns:
        A figure with ``len(epochs) x len(keys)`` heatmap axes and one colour bar.
    """
    if not snapshots:
        raise RunDirError("no alpha snapshots to plot")
    chosen = [snapshots[i] for i in _pick(len(snapshots), max_epochs)]
    first = chosen[0]
    names = list(keys) if keys is not None else list(first.logits)
    sp = _space(first, space)
    rows, cols = len(chosen), len(names)
    height = 0.28 * len(first.edges) + 1.0
    fig = Figure(
        figsize=(0.35 * len(first.ops) * cols + 1.6, height * rows + 0.6), layout="constrained"
    )
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False), dtype=object)
    probs_of = {
        (r, key): op_probabilities(snap.logits[key]["ops"])
        for r, snap in enumerate(chosen)
        for key in names
    }
    # the colour scale ends at the largest probability shown: early maps are near uniform
    # (1 / n_ops), and a fixed 0..1 scale would hide how they move apart
    vmax = max(max(float(p.max()) for p in probs_of.values()), 1.5 / len(first.ops))
    image = None
    for r, snap in enumerate(chosen):
        decoded = decode(snap.logits, sp) if sp is not None else None
        for c, key in enumerate(names):
            ax = axes[r, c]
            image = ax.imshow(probs_of[r, key], cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
            labels = [f"{s}->{n}" for s, n in snap.edges]
            if sp is not None:
                kept = kept_probabilities(
                    torch.as_tensor(snap.logits[key]["inputs"], dtype=torch.float32), sp
                )
                labels = [f"{lab} ({float(p):.2f})" for lab, p in zip(labels, kept)]
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
            ax.set_xticks(
                range(len(snap.ops)), snap.ops if r == rows - 1 else [], fontsize=6, rotation=90
            )
            if decoded is not None:
                for (source, node), op in decoded.cell(key).edges().items():
                    row = snap.edges.index((source, node))
                    col = snap.ops.index(op)
                    ax.add_patch(
                        Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec="black", lw=1.5)
                    )
            title = f"{key}, epoch {snap.epoch}"
            if np.isfinite(snap.tau):
                title += f" (tau {snap.tau:.2g})"
            ax.set_title(title, fontsize=8)
    assert image is not None
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="P(op | edge)")
    return fig


def plot_search_history(history: HistoryLike) -> Figure:
    """The search's curves from its ``history.csv`` (a path, a run folder or rows).

    Panels (those whose columns exist): temperature ``tau``; mean entropy of the op and
    input choices; the weights' and architecture losses; the validation Dice; the expected
    cost of the sampled child (parameters, GFLOPs, activation MB).
    """
    rows = history_rows(history)
    return plot_columns(
        rows,
        [
            ("temperature", ["tau"]),
            ("entropy (nats)", ["entropy_ops", "entropy_inputs"]),
            ("loss", ["loss_w", "loss_a"]),
            ("validation Dice", ["val_dice"]),
            ("expected GFLOPs", ["exp_gflops"]),
            ("expected activations (MB)", ["exp_act_mb"]),
        ],
        title="search",
    )
