"""Decide a run's postprocessing the way nnU-Net does: on the validation cases, in their own
geometry.

nnU-Net (``nnUNetTrainer.perform_actual_validation`` then ``determine_postprocessing``)
predicts each validation case from its preprocessed array, exports the probabilities back onto
the image's original grid (resampling and crop undone), and compares those label maps with the
raw reference labels (``labelsTr``), not with the resampled ones of the preprocessed grid. The
largest-component decision (:func:`nasmed.postprocess.determine_postprocessing`) is then taken
on these original-geometry Dice scores, per class, keeping a step only if it raises Dice — the
same grid on which ``nasmed predict`` later applies it.

:func:`decide_postprocessing` does exactly that with nasmed's own pieces: the cached
preprocessed case, :func:`nasmed.infer.predict_probabilities` (Gaussian sliding windows with
the overlap ``nasmed predict`` uses, no mirroring: ``predict``'s default), and
:func:`decathlon.caseprep.restore_to_original`. It is its own module because it needs the
inference code, which itself applies the saved decision (:mod:`nasmed.postprocess`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from decathlon.cache import load_cached_case
from decathlon.caseprep import restore_to_original
from decathlon.datalist import Task, read_case
from decathlon.errors import DatasetError
from nasmed.infer import predict_probabilities
from nasmed.postprocess import Postprocessing, determine_postprocessing
from nasmed.train.validation import logits_only

__all__ = ["decide_postprocessing", "original_geometry_predictions"]

log = logging.getLogger(__name__)


def original_geometry_predictions(
    net: nn.Module | Callable[[torch.Tensor], Any],
    task: Task,
    cache_dir: str | os.PathLike[str],
    cases: Sequence[str],
    patch: Sequence[int],
    *,
    device: torch.device,
    overlap: float = 0.5,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(predictions, references)``: each validation case predicted from its cached
    preprocessed array and mapped back onto its original grid, with its raw reference label.

    Raises:
        DatasetError: a case is not in the task, has no label, or is missing from the cache.
    """
    run = logits_only(net)
    if isinstance(net, nn.Module):
        net.eval()
    preds: list[np.ndarray] = []
    refs: list[np.ndarray] = []
    with torch.no_grad():
        for name in cases:
            image, _, properties = load_cached_case(cache_dir, name, mmap=False)
            prob = predict_probabilities(run, image, patch, device=device, overlap=overlap)
            back = restore_to_original(prob, properties, is_label=False)
            _, label = read_case(task.case(name), num_channels=task.num_channels)
            if label is None:
                raise DatasetError(f"{task.root}: case {name!r} has no label to validate against")
            if label.array.shape[1:] != back.shape[1:]:
                raise DatasetError(
                    f"{label.path}: label grid {label.array.shape[1:]} differs from the restored "
                    f"prediction's {back.shape[1:]} (case {name!r})"
                )
            preds.append(np.argmax(back, axis=0).astype(np.int16))
            refs.append(np.asarray(label.array[0], dtype=np.int16))
    return preds, refs


def decide_postprocessing(
    net: nn.Module | Callable[[torch.Tensor], Any],
    task: Task,
    cache_dir: str | os.PathLike[str],
    cases: Sequence[str],
    patch: Sequence[int],
    *,
    device: torch.device,
    num_classes: int,
) -> Postprocessing | None:
    """nnU-Net's largest-component decision on ``cases`` in their original geometry (``None``
    when there is no validation case)."""
    if not cases:
        return None
    preds, refs = original_geometry_predictions(net, task, cache_dir, cases, patch, device=device)
    post = determine_postprocessing(preds, refs, num_classes)
    log.info(
        "postprocessing (original geometry, %d validation cases): largest foreground component "
        "%s, per class %s (val Dice %.4f -> %.4f)",
        len(cases),
        "yes" if post.foreground else "no",
        list(post.classes) or "none",
        post.dice_before if post.dice_before is not None else math.nan,
        post.dice_after if post.dice_after is not None else math.nan,
    )
    return post
