"""nnU-Net's postprocessing: keep the largest connected component where validation says so.

At the end of training, :func:`determine_postprocessing` looks at the validation cases'
predictions in their original geometry (:mod:`nasmed.postprocess_decide` maps them back and
reads the raw reference labels) and decides, as ``nnUNetv2_determine_postprocessing`` does:

1. keep only the largest connected component of the foreground (all classes together) if that
   raises the mean Dice over the classes;
2. then, for each class, keep only its largest component if that raises that class's Dice.

A change is kept only when it improves Dice strictly (ties keep the prediction as it is). The
decision (:class:`Postprocessing`) is written to ``RUN_DIR/postprocessing.json`` and applied by
``nasmed predict`` to every prediction (:func:`apply_saved`). Components and their removal are
MONAI's ``KeepLargestConnectedComponent`` (26-connectivity); Dice is MONAI's ``compute_dice``
(a class absent from both prediction and reference does not count for that case).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from monai.transforms import KeepLargestConnectedComponent

from decathlon.fsutil import atomic_write_json
from nasmed.errors import RunDirError

__all__ = [
    "POSTPROCESSING_FILE",
    "Postprocessing",
    "apply_saved",
    "determine_postprocessing",
    "keep_largest",
]

POSTPROCESSING_FILE = "postprocessing.json"


@dataclass(frozen=True)
class Postprocessing:
    """What to do to a predicted label map.

    Attributes:
        foreground: keep only the largest connected component of the foreground.
        classes: classes of which to keep only the largest component (after ``foreground``).
        dice_before: validation mean Dice of the raw predictions (for the record).
        dice_after: validation mean Dice with this postprocessing.
    """

    foreground: bool = False
    classes: tuple[int, ...] = ()
    dice_before: float | None = field(default=None, compare=False)
    dice_after: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(sorted(int(c) for c in self.classes)))

    @property
    def identity(self) -> bool:
        """Whether it changes nothing."""
        return not self.foreground and not self.classes

    def apply(self, seg: np.ndarray, num_classes: int | None = None) -> np.ndarray:
        """The label map ``seg`` (any integer array, no channel axis) postprocessed."""
        if self.identity:
            return seg
        labels = range(1, int(seg.max()) + 1) if num_classes is None else range(1, num_classes)
        out = seg
        if self.foreground:
            out = keep_largest(out, list(labels), independent=False)
        if self.classes:
            out = keep_largest(out, list(self.classes), independent=True)
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "foreground": self.foreground,
            "classes": list(self.classes),
            "dice_before": self.dice_before,
            "dice_after": self.dice_after,
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str = POSTPROCESSING_FILE) -> Postprocessing:
        """Inverse of :meth:`to_json`.

        Raises:
            RunDirError: malformed (the message names ``source``).
        """
        try:
            return cls(
                foreground=bool(data["foreground"]),
                classes=tuple(int(c) for c in data["classes"]),
                dice_before=data.get("dice_before"),
                dice_after=data.get("dice_after"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RunDirError(f"{source}: not a postprocessing file ({exc})") from None

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        """Write ``RUN_DIR/postprocessing.json`` atomically."""
        path = Path(run_dir) / POSTPROCESSING_FILE
        atomic_write_json(path, self.to_json())
        return path


def keep_largest(seg: np.ndarray, labels: Sequence[int], *, independent: bool) -> np.ndarray:
    """``seg`` with only the largest connected component of each of ``labels``
    (``independent``) or of their union (the rest of those labels becomes background)."""
    if not labels:
        return seg
    keep = KeepLargestConnectedComponent(
        applied_labels=list(labels), is_onehot=False, independent=independent, connectivity=3
    )
    out = keep(torch.tensor(np.asarray(seg))[None])  # a copy: MONAI edits in place
    return np.asarray(torch.as_tensor(out)[0].numpy(), dtype=seg.dtype)


def _class_dice(
    preds: Sequence[np.ndarray], refs: Sequence[np.ndarray], num_classes: int
) -> np.ndarray:
    """Per class (1..K-1) Dice averaged over the cases where the class is anywhere (nan if in
    none)."""
    rows = []
    for pred, ref in zip(preds, refs, strict=True):
        p = one_hot(torch.as_tensor(np.asarray(pred, np.int64))[None, None], num_classes)
        r = one_hot(torch.as_tensor(np.asarray(ref, np.int64))[None, None], num_classes)
        rows.append(compute_dice(p, r, include_background=False, ignore_empty=False)[0])
        empty = (r[0, 1:].flatten(1).sum(1) == 0) & (p[0, 1:].flatten(1).sum(1) == 0)
        rows[-1][empty] = math.nan
    table = torch.stack(rows).numpy()
    with np.errstate(all="ignore"):
        return np.array(
            [np.nanmean(c) if np.isfinite(c).any() else math.nan for c in table.T], np.float64
        )


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def determine_postprocessing(
    preds: Sequence[np.ndarray], refs: Sequence[np.ndarray], num_classes: int
) -> Postprocessing:
    """Decide the postprocessing from validation predictions and references (same grids).

    Args:
        preds: predicted label maps, one per validation case (no channel axis).
        refs: the reference label maps.
        num_classes: classes, background included.
    """
    if len(preds) != len(refs) or not preds:
        raise ValueError("need one reference per prediction, and at least one case")
    labels = list(range(1, num_classes))
    base = _class_dice(preds, refs, num_classes)
    before = best = _mean(base)
    current = list(preds)
    foreground = False
    trial = [keep_largest(p, labels, independent=False) for p in current]
    scores = _class_dice(trial, refs, num_classes)
    if _mean(scores) > best:
        foreground, current, base, best = True, trial, scores, _mean(scores)
    classes: list[int] = []
    for k in labels:
        trial = [keep_largest(p, [k], independent=True) for p in current]
        scores = _class_dice(trial, refs, num_classes)
        if math.isfinite(scores[k - 1]) and scores[k - 1] > base[k - 1]:
            classes.append(k)
            current, base, best = trial, scores, _mean(scores)
    return Postprocessing(foreground, tuple(classes), dice_before=before, dice_after=best)


def load_postprocessing(run_dir: str | os.PathLike[str]) -> Postprocessing | None:
    """``RUN_DIR/postprocessing.json``, or ``None`` when the run has none."""
    path = Path(run_dir) / POSTPROCESSING_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc})") from None
    return Postprocessing.from_json(data, source=str(path))


def apply_saved(run_dir: str | os.PathLike[str], seg: np.ndarray) -> np.ndarray:
    """``seg`` postprocessed as the run in ``run_dir`` decided (unchanged if it decided
    nothing or has no ``postprocessing.json``)."""
    post = load_postprocessing(run_dir)
    return seg if post is None else post.apply(seg)
