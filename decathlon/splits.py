"""Deterministic case splits: k-fold cross-validation and the halves of a bilevel search.

Splits are made **by case** (never by patch or slice), from the sorted case names and a seed, so
the same names and seed give the same folds on every machine. ``splits.json`` holds a list of
``{"train": [...], "val": [...]}``, one entry per fold, the form nnU-Net uses.

Small tasks: :func:`choose_folds` shrinks the default 5 folds (with a warning) to the number of
training cases, down to 2; a task of one case gets a single fold holding it (nothing held out).
:func:`fold_split` also knows nnU-Net's ``"all"`` fold: train on every case (and validate on
them too: there is nothing held out), for tasks too small to hold any case out.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from decathlon.errors import DatasetError
from decathlon.fsutil import atomic_write_json

__all__ = [
    "ALL_FOLD",
    "DEFAULT_FOLDS",
    "bilevel_halves",
    "choose_folds",
    "fold_split",
    "kfold_splits",
    "load_splits",
    "save_splits",
    "task_splits",
]

log = logging.getLogger(__name__)

Split = dict[str, list[str]]

#: Folds when the user gives none (nnU-Net's 5-fold cross-validation).
DEFAULT_FOLDS = 5
#: nnU-Net's name of the fold that trains on every case.
ALL_FOLD = "all"


def choose_folds(num_cases: int, folds: int | None = None) -> int:
    """The number of folds: ``folds`` as given, or the default shrunk to fit a small task.

    With ``folds=None`` and fewer than :data:`DEFAULT_FOLDS` cases the folds shrink, with a
    warning, to the number of cases (down to 2); one case gives 1 (only ``--fold all`` trains).
    """
    if folds is not None:
        return folds
    if num_cases >= DEFAULT_FOLDS:
        return DEFAULT_FOLDS
    k = max(1, num_cases)
    if k >= 2:
        log.warning(
            "%d training cases are fewer than the default %d folds: using %d folds",
            num_cases,
            DEFAULT_FOLDS,
            k,
        )
    else:
        log.warning(
            "%d training case: no fold can hold a case out; train it with --fold all", num_cases
        )
    return k


def task_splits(case_names: Sequence[str], folds: int, seed: int = 0) -> list[Split]:
    """:func:`kfold_splits`, or for ``folds == 1`` one fold that trains on every case."""
    if folds == 1:
        return [{"train": _unique_sorted(case_names, "split"), "val": []}]
    return kfold_splits(case_names, k=folds, seed=seed)


def fold_split(splits: Sequence[Split], fold: int | str) -> Split:
    """Fold ``fold`` of ``splits``, or for ``"all"`` every case as training and validation.

    Raises:
        DatasetError: ``fold`` is out of range, or a fold without validation cases is asked for.
    """
    if fold == ALL_FOLD:
        names = sorted({n for s in splits for part in s.values() for n in part})
        return {"train": names, "val": list(names)}
    if not isinstance(fold, int) or not 0 <= fold < len(splits):
        raise DatasetError(
            f"--fold {fold} is out of range: the splits have {len(splits)} fold(s) "
            f"(0..{len(splits) - 1}, or {ALL_FOLD})"
        )
    if not splits[fold]["val"]:
        raise DatasetError(
            f"fold {fold} holds no validation case (the task is too small); use --fold {ALL_FOLD}"
        )
    return splits[fold]


def _unique_sorted(case_names: Sequence[str], what: str) -> list[str]:
    names = [str(n) for n in case_names]
    dupes = sorted(n for n, count in Counter(names).items() if count > 1)
    if dupes:
        raise DatasetError(f"{what}: duplicate case names {', '.join(dupes[:5])}")
    return sorted(names)


def kfold_splits(case_names: Sequence[str], k: int = 5, seed: int = 0) -> list[Split]:
    """Split cases into ``k`` folds; fold ``i`` validates on the ``i``-th part.

    Args:
        case_names: the training cases (any order; they are sorted first).
        k: number of folds (at least 2, at most the number of cases).
        seed: shuffles the sorted names before they are cut into parts.

    Returns:
        ``k`` dicts ``{"train": [...], "val": [...]}`` with sorted, disjoint lists whose union is
        every case; validation parts differ in size by at most one.

    Raises:
        DatasetError: fewer cases than folds, ``k < 2``, or duplicate names.
    """
    names = _unique_sorted(case_names, "k-fold split")
    if k < 2:
        raise DatasetError(f"k-fold split needs at least 2 folds, got k={k}")
    if len(names) < k:
        raise DatasetError(
            f"k-fold split: {len(names)} cases are too few for {k} folds; "
            f"use --folds {max(2, len(names))} or fewer, or add cases"
        )
    order = np.random.default_rng(seed).permutation(len(names))
    parts = np.array_split(order, k)
    splits: list[Split] = []
    for part in parts:
        val = set(int(i) for i in part)
        splits.append(
            {
                "train": [n for i, n in enumerate(names) if i not in val],
                "val": [n for i, n in enumerate(names) if i in val],
            }
        )
    return splits


def bilevel_halves(train_cases: Sequence[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """Halve a training fold for bilevel search: one half fits weights, the other architecture.

    Returns:
        ``(weights_half, arch_half)``, sorted and disjoint; the weights half gets the odd case.

    Raises:
        DatasetError: fewer than 2 cases, or duplicate names.
    """
    names = _unique_sorted(train_cases, "bilevel split")
    if len(names) < 2:
        raise DatasetError(
            f"bilevel split: {len(names)} training case(s) are too few; "
            "the weights half and the architecture half need at least 1 case each (2 in all)"
        )
    order = np.random.default_rng(seed).permutation(len(names))
    cut = (len(names) + 1) // 2
    weights = sorted(names[int(i)] for i in order[:cut])
    arch = sorted(names[int(i)] for i in order[cut:])
    return weights, arch


def save_splits(path: str | os.PathLike[str], splits: Sequence[Split]) -> Path:
    """Write ``splits`` as JSON to ``path`` atomically; returns the path."""
    _check_splits(splits, Path(path))
    data = [{"train": list(s["train"]), "val": list(s["val"])} for s in splits]
    atomic_write_json(path, data)
    return Path(path)


def load_splits(path: str | os.PathLike[str]) -> list[Split]:
    """Read a ``splits.json``.

    Raises:
        DatasetError: missing file, invalid JSON, or not a list of ``{"train", "val"}`` folds.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{p}: splits file not found; run `nasmed preprocess` first") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{p}: not a valid splits file ({exc})") from exc
    return _check_splits(data, p)


def _check_splits(data: object, path: Path) -> list[Split]:
    if not isinstance(data, list) or not data:
        raise DatasetError(f"{path}: splits must be a non-empty list of folds")
    out: list[Split] = []
    for i, fold in enumerate(data):
        if not isinstance(fold, dict) or set(fold) != {"train", "val"}:
            raise DatasetError(f"{path}: fold {i} must have exactly the keys 'train' and 'val'")
        train, val = fold["train"], fold["val"]
        if not all(
            isinstance(x, list) and all(isinstance(n, str) for n in x) for x in (train, val)
        ):
            raise DatasetError(f"{path}: fold {i}: 'train' and 'val' must be lists of case names")
        overlap = sorted(set(train) & set(val))
        if overlap:
            raise DatasetError(f"{path}: fold {i}: cases in both train and val: {overlap[:5]}")
        out.append({"train": list(train), "val": list(val)})
    return out
