"""Deterministic case splits: k-fold cross-validation and the halves of a bilevel search.

Splits are made **by case** (never by patch or slice), from the sorted case names and a seed, so
the same names and seed give the same folds on every machine. A fold is a :class:`Split`
(typed: ``split.train``, ``split.val``); ``splits.json`` holds a list of
``{"train": [...], "val": [...]}``, one entry per fold, the form nnU-Net uses
(:meth:`Split.to_json`).

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from decathlon.errors import DatasetError
from decathlon.fsutil import atomic_write_json

__all__ = [
    "ALL_FOLD",
    "DEFAULT_FOLDS",
    "Split",
    "bilevel_halves",
    "choose_folds",
    "fold_split",
    "kfold_splits",
    "load_splits",
    "save_splits",
    "task_splits",
]

log = logging.getLogger(__name__)

SPLIT_KEYS = ("train", "val")


@dataclass(frozen=True)
class Split(Mapping[str, list[str]]):
    """One fold: the cases it trains on and the cases it validates on.

    A typed record; it also reads as the JSON object ``splits.json`` stores
    (``split["val"]`` is ``list(split.val)``, ``{**split}`` the two lists), so code written
    for that form keeps working.

    Attributes:
        train: training case names.
        val: validation case names.
    """

    train: tuple[str, ...]
    val: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", tuple(str(n) for n in self.train))
        object.__setattr__(self, "val", tuple(str(n) for n in self.val))

    def __getitem__(self, key: str) -> list[str]:
        if key == "train":
            return list(self.train)
        if key == "val":
            return list(self.val)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(SPLIT_KEYS)

    def __len__(self) -> int:
        return len(SPLIT_KEYS)

    def to_json(self) -> dict[str, list[str]]:
        """The ``splits.json`` form of the fold."""
        return {"train": list(self.train), "val": list(self.val)}

    @classmethod
    def from_json(cls, data: Any, *, source: str = "splits.json", index: int = 0) -> Split:
        """Inverse of :meth:`to_json`, checked.

        Raises:
            DatasetError: not exactly the keys ``train`` and ``val``, not lists of names, or a
                case in both (the message names ``source`` and the fold ``index``).
        """
        if not isinstance(data, Mapping) or set(data) != set(SPLIT_KEYS):
            raise DatasetError(
                f"{source}: fold {index} must have exactly the keys 'train' and 'val'"
            )
        train, val = data["train"], data["val"]
        if not all(
            isinstance(x, (list, tuple)) and all(isinstance(n, str) for n in x)
            for x in (train, val)
        ):
            raise DatasetError(
                f"{source}: fold {index}: 'train' and 'val' must be lists of case names"
            )
        overlap = sorted(set(train) & set(val))
        if overlap:
            raise DatasetError(
                f"{source}: fold {index}: cases in both train and val: {overlap[:5]}"
            )
        return cls(tuple(train), tuple(val))


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
        return [Split(tuple(_unique_sorted(case_names, "split")))]
    return kfold_splits(case_names, k=folds, seed=seed)


def fold_split(splits: Sequence[Split], fold: int | str) -> Split:
    """Fold ``fold`` of ``splits``, or for ``"all"`` every case as training and validation.

    Raises:
        DatasetError: ``fold`` is out of range, or a fold without validation cases is asked for.
    """
    if fold == ALL_FOLD:
        names = tuple(sorted({n for s in splits for n in (*s.train, *s.val)}))
        return Split(names, names)
    if not isinstance(fold, int) or not 0 <= fold < len(splits):
        raise DatasetError(
            f"--fold {fold} is out of range: the splits have {len(splits)} fold(s) "
            f"(0..{len(splits) - 1}, or {ALL_FOLD})"
        )
    if not splits[fold].val:
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
        ``k`` folds with sorted, disjoint training and validation cases whose union is every
        case; validation parts differ in size by at most one.

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
            Split(
                tuple(n for i, n in enumerate(names) if i not in val),
                tuple(n for i, n in enumerate(names) if i in val),
            )
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


def save_splits(
    path: str | os.PathLike[str], splits: Sequence[Split | Mapping[str, Sequence[str]]]
) -> Path:
    """Write ``splits`` (folds, or their JSON form) as JSON to ``path`` atomically; returns the
    path."""
    folds = _check_splits([dict(s) for s in splits], Path(path))
    data = [s.to_json() for s in folds]
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
    return [Split.from_json(fold, source=str(path), index=i) for i, fold in enumerate(data)]
