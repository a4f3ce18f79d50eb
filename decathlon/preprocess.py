"""The preprocessing stage: fingerprint, plan, cache and splits of a task (``nasmed preprocess``).

:func:`run_preprocess` is the API behind the verb. This module also gathers the stage's parts
under one name: one case (:mod:`decathlon.caseprep`), the cache (:mod:`decathlon.cache`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from decathlon.cache import (
    case_is_current,
    case_sources,
    load_cached_case,
    load_class_locations,
    preprocess_task,
)
from decathlon.caseprep import (
    FG_SAMPLES_PER_CLASS,
    PreprocessedCase,
    preprocess_case,
    restore_to_original,
)
from decathlon.errors import DatasetError, DecathlonError
from decathlon.fingerprint import Fingerprint, fingerprint_task
from decathlon.outputs import check_dir, check_separate, claim_dir
from decathlon.plan import DEFAULT_MEMORY_BUDGET_MB, Plan, check_patch_size, make_plan
from decathlon.splits import choose_folds, save_splits, task_splits

if TYPE_CHECKING:
    from decathlon.datalist import Task

__all__ = [
    "FG_SAMPLES_PER_CLASS",
    "PreprocessedCase",
    "case_is_current",
    "load_cached_case",
    "load_class_locations",
    "preprocess_case",
    "preprocess_task",
    "restore_to_original",
    "run_preprocess",
]

log = logging.getLogger(__name__)

#: The owner recorded in a work folder's ledger (:mod:`decathlon.outputs`).
VERB = "preprocess"


def _reusable_fingerprint(path: Path, task: Task) -> Fingerprint | None:
    """The saved fingerprint, if it describes exactly the task's current training files."""
    if not path.is_file():
        return None
    try:
        fp = Fingerprint.load(path)
    except DatasetError:
        return None
    by_name = {c.name: c for c in fp.cases}
    if sorted(by_name) != sorted(c.name for c in task.training):
        return None
    if fp.modalities != task.modalities or fp.labels != task.labels:
        return None  # dataset.json changed
    try:
        current = all(by_name[c.name].sources == case_sources(c) for c in task.training)
    except OSError:
        return None
    return fp if current else None


def run_preprocess(
    task_dir: str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    workers: int = 2,
    patch_size: tuple[int, int, int] | None = None,
    folds: int | None = None,
    seed: int = 0,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    progress: bool = True,
) -> Plan:
    """Fingerprint, plan, preprocess and split a task (the API behind ``nasmed preprocess``).

    Writes ``WORK_DIR/fingerprint.json``, ``plan.json``, ``cache/`` and ``splits.json``. Inputs
    are checked (task, output path, patch size, folds) and every case is read before anything
    is written; a re-run reuses the fingerprint and cache of unchanged cases. ``folds=None``
    takes :data:`decathlon.splits.DEFAULT_FOLDS`, fewer for a small task
    (:func:`decathlon.splits.choose_folds`). ``WORK_DIR`` must be new, empty, or a work folder
    this verb wrote for the same task (:mod:`decathlon.outputs`), and apart from the task.

    Raises:
        DecathlonError: invalid task, unreadable case, output path is a file, bad patch or folds.
        OutputError: ``WORK_DIR`` holds other files, another task's work, or overlaps the task.
    """
    work = Path(work_dir)
    if work.exists() and not work.is_dir():
        raise DecathlonError(f"{work}: output path exists and is a file, not a folder")
    from decathlon.datalist import load_task

    task = load_task(task_dir)
    if not task.training:
        raise DatasetError(f"{task.root}: dataset.json lists no training cases")
    owner = str(Path(os.path.realpath(task.root)))
    check_separate(work, [task.root, *{f.parent for f in task.outside_files}])
    check_dir(work, VERB, key=owner)
    if patch_size is not None:
        check_patch_size(tuple(patch_size), 16)
    k = choose_folds(len(task.training), folds)
    splits = task_splits([c.name for c in task.training], k, seed=seed)
    fingerprint = _reusable_fingerprint(work / "fingerprint.json", task)
    if fingerprint is None:
        fingerprint = fingerprint_task(task, workers=workers, progress=progress)
    else:
        log.info("fingerprint: source files unchanged, reusing %s", work / "fingerprint.json")
    plan = make_plan(fingerprint, patch_size=patch_size, memory_budget_mb=memory_budget_mb)
    claim_dir(work, VERB, key=owner)
    fingerprint.save(work / "fingerprint.json")
    plan.save(work / "plan.json")
    preprocess_task(task, plan, work / "cache", workers=workers, progress=progress)
    save_splits(work / "splits.json", splits)
    return plan
