"""Run folders: one run per folder, locked while it runs, refused when it holds another run.

A run folder carries ``run.json`` (what kind of run, with which settings, on which task). Starting
a run in a folder that holds a different run, or files nasmed did not write, is a
:class:`RunDirError`; ``resume=True`` continues the run recorded there and refuses changed
settings, a changed task (``dataset.json`` or its list of case files, hashed), changed splits, and
a run whose checkpoint has gone missing. A folder whose earlier start never reached its first
epoch (no checkpoint, no history) may simply be started again.

:class:`nasmed.runfolder.RunFolder` is the object a run holds: it opens the folder (the checks
above), knows which recorded settings may change on resume (and records their new values), and
cleans up: on a failure before the first epoch of a fresh run it removes what the run wrote; at
the end it releases the lock.

While a run lives it holds an exclusive :func:`fcntl.flock` on ``RUN_DIR/.nasmed.lock`` (which
holds its pid): a second start or resume of the same folder is refused, naming that pid. The
kernel drops the lock with the process, so ``kill -9`` leaves no stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_write_json, file_mode
from decathlon.outputs import OutputError, check_separate, claim_dir, is_bookkeeping
from decathlon.plan import Plan
from decathlon.preprocess import run_preprocess
from decathlon.splits import Split, fold_split, load_splits
from nasmed import __version__
from nasmed.distributed import is_main, run_on_main
from nasmed.errors import RunDirError

__all__ = [
    "HISTORY_FILE",
    "LOCK_FILE",
    "RUN_FILE",
    "SPLIT_SEED",
    "prepare_run_dir",
    "prepare_work",
    "read_run_info",
    "release_run_dir",
    "task_hash",
]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
LOCK_FILE = ".nasmed.lock"
#: Written after every epoch by :class:`nasmed.train.history.History`: its presence means the run
#: made progress, so a missing checkpoint is a loss, not a run that never started.
HISTORY_FILE = "history.csv"

# Folds (and the bilevel halves) never change with a run's seed: only weights and patches do.
SPLIT_SEED = 0

# run folder (resolved) -> the open file descriptor holding its lock, for this process's runs
_LOCKS: dict[Path, int] = {}


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's ``run.json`` as a dict, or None when the folder has none."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable run file ({exc})") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: run file is not a JSON object")
    return data


def task_hash(task_root: str | os.PathLike[str]) -> str:
    """SHA-256 of a task's ``dataset.json`` bytes and its sorted list of case files.

    Raises:
        DatasetError: the task cannot be parsed.
    """
    from decathlon.datalist import load_task

    task = load_task(task_root, check_files=False, allow_outside_paths=True)
    h = hashlib.sha256(task.dataset_json.read_bytes())
    root = task.root
    for case in sorted(task.cases, key=lambda c: c.name):
        for f in case.files:
            rel = os.path.relpath(f, root)
            h.update(f"\n{case.name}\t{rel}".encode())
    return h.hexdigest()


def _lock(path: Path) -> tuple[int, bool]:
    """Take the run folder's lock (re-entrant within this process); returns ``(fd, new)``."""
    key = path.resolve()
    if key in _LOCKS:
        return _LOCKS[key], False
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, file_mode())
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create the run lock ({exc.strerror})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(
            f"{path}: the run is in use by another nasmed process (pid {holder}); "
            "wait for it to end, or use another folder"
        ) from None
    _LOCKS[key] = fd
    return fd, True


def release_run_dir(run_dir: str | os.PathLike[str]) -> None:
    """Drop this process's lock on ``run_dir`` (if it holds one)."""
    fd = _LOCKS.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def _has_progress(path: Path, checkpoint: str | None) -> bool:
    return (checkpoint is not None and (path / checkpoint).is_file()) or (
        path / HISTORY_FILE
    ).is_file()


def _clear(path: Path) -> None:
    """Remove what a start that never reached its first epoch left (not the lock)."""
    for entry in path.iterdir():
        if entry.name == LOCK_FILE:
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    try:
        json.dumps(settings, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RunDirError(
            f"{path}: the run's settings cannot be recorded in {RUN_FILE} ({exc})"
        ) from None
    for key, value in settings.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RunDirError(f"{path}: setting {key}={value} is not a finite number")


def prepare_run_dir(
    run_dir: str | os.PathLike[str],
    kind: str,
    settings: dict[str, Any],
    *,
    resume: bool = False,
    immutable: tuple[str, ...] = (),
    added: Mapping[str, Any] | None = None,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    task_root: str | os.PathLike[str] | None = None,
    checkpoint: str | None = None,
    complete: str | None = None,
) -> tuple[Path, bool]:
    """Check, create and lock a run folder for a run of ``kind`` with ``settings``.

    Args:
        run_dir: the folder.
        kind: the run's kind (``"search"``, ``"train"``, ...).
        settings: JSON-serialisable settings recorded in ``run.json``.
        resume: continue the run already in the folder.
        immutable: settings that must equal the recorded ones on resume (seed, space, ...);
            the others may change.
        added: settings introduced after a run may have been recorded, with the value such a
            run had: a ``run.json`` without one resumes when the new value is that one.
        inputs: the run's inputs (task folder, genotype, weights): the folder may not be, hold
            or lie inside any of them (:func:`decathlon.outputs.check_separate`).
        task_root: the task; its :func:`task_hash` is recorded and checked on resume.
        checkpoint: the run's resume point, relative to the folder (``checkpoints/last.pt``);
            resuming a run that made progress but lost it is an error.
        complete: the file a finished run has (``model.json``): then no checkpoint is needed.

    Returns:
        The folder and whether an earlier run is being resumed. The folder stays locked by this
        process until :func:`release_run_dir` or the process ends.

    Raises:
        RunDirError: the folder is a file, holds another run or foreign files, is in use, or
            the resume check fails (settings, task, checkpoint).
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: run folder exists and is a file")
    try:
        check_separate(path, inputs)
    except OutputError as exc:
        raise RunDirError(str(exc)) from None
    _check_settings(path, settings)
    info = read_run_info(path) if path.is_dir() else None
    if info is None and path.is_dir() and any(not is_bookkeeping(p) for p in path.iterdir()):
        raise RunDirError(f"{path}: folder is not empty and holds no {RUN_FILE}; use a new folder")
    if info is not None and info.get("kind") != kind:  # refused without even taking the lock
        raise RunDirError(
            f"{path}: holds a {info.get('kind')!r} run, not {kind!r}; use a new folder"
        )
    existed = path.is_dir()
    path.mkdir(parents=True, exist_ok=True)
    fd, new_lock = _lock(path)
    try:
        resumed = _check_run(
            path, kind, settings, resume, immutable, added or {}, task_root, checkpoint, complete
        )
    except BaseException:
        if new_lock:
            release_run_dir(path)
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
        raise
    if new_lock:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return path, resumed


def _check_run(
    path: Path,
    kind: str,
    settings: dict[str, Any],
    resume: bool,
    immutable: tuple[str, ...],
    added: Mapping[str, Any],
    task_root: str | os.PathLike[str] | None,
    checkpoint: str | None,
    complete: str | None,
) -> bool:
    info = read_run_info(path)  # again, under the lock: another start may have won the race
    if info is None and any(not is_bookkeeping(p) for p in path.iterdir()):
        raise RunDirError(f"{path}: folder is not empty and holds no {RUN_FILE}; use a new folder")
    if info is not None and info.get("kind") != kind:
        raise RunDirError(
            f"{path}: holds a {info.get('kind')!r} run, not {kind!r}; use a new folder"
        )
    started = info is not None and (
        _has_progress(path, checkpoint) or (complete is not None and (path / complete).is_file())
    )
    if info is not None and not started:
        log.warning("%s: the earlier start never finished an epoch; starting it again", path)
        _clear(path)
        info = None
    if info is None:
        if resume:
            log.warning("%s: nothing to resume, starting a new %s run", path, kind)
        try:
            claim_dir(path, kind)
        except OutputError as exc:
            raise RunDirError(str(exc)) from None
        record: dict[str, Any] = {
            "kind": kind,
            "nasmed": __version__,
            "created": time.time(),
            "settings": settings,
        }
        if task_root is not None:
            record["task_hash"] = task_hash(task_root)
        atomic_write_json(path / RUN_FILE, record)
        return False
    if not resume:
        raise RunDirError(
            f"{path}: already holds a {kind} run; pass --resume to continue it or use a new folder"
        )
    old = info.get("settings", {})
    for key in immutable:
        if key not in old and key in added and settings.get(key) == added[key]:
            continue  # recorded before the setting existed, and it keeps that behaviour
        if old.get(key) != settings.get(key):
            raise RunDirError(
                f"{path}: cannot resume with {key}={settings.get(key)!r}; "
                f"the run was started with {key}={old.get(key)!r}"
            )
    if task_root is not None and "task_hash" in info and info["task_hash"] != task_hash(task_root):
        raise RunDirError(
            f"{path}: cannot resume: the task {task_root} changed since the run started "
            "(dataset.json or its case files); start a new run in a new folder"
        )
    finished = complete is not None and (path / complete).is_file()
    if checkpoint is not None and not finished and not (path / checkpoint).is_file():
        raise RunDirError(
            f"{path / checkpoint}: checkpoint missing, so the run cannot be resumed (it would "
            "restart from epoch 0); start a new run in a new folder"
        )
    return True


def prepare_work(
    task_root: str | os.PathLike[str],
    run: Path,
    work_dir: str | os.PathLike[str] | None,
    *,
    workers: int,
    folds: int,
    fold: int | str,
    progress: bool,
) -> tuple[Path, Plan, Split]:
    """Preprocess a task for a run and pick its fold.

    Rank 0 runs :func:`decathlon.preprocess.run_preprocess` into ``work_dir`` (default
    ``RUN_DIR/work``; unchanged cases are reused) with the fixed :data:`SPLIT_SEED`, and copies
    ``plan.json`` into the run; every rank then reads the same splits.

    Returns:
        The work folder, the plan and fold ``fold`` (a :class:`~decathlon.splits.Split`)
        (``"all"``: every case in both, :func:`decathlon.splits.fold_split`). The split is
        recorded in ``run.json`` the first time and must be the same on resume.
    """
    work = Path(work_dir) if work_dir is not None else run / "work"
    plan = run_on_main(
        lambda: run_preprocess(
            task_root,
            work,
            workers=max(1, workers),
            folds=folds,
            seed=SPLIT_SEED,
            progress=progress,
        )
    )
    split = fold_split(load_splits(work / "splits.json"), fold)
    if is_main():
        _record_split(run, fold, split)
        plan.save(run / "plan.json")
    return work, plan, split


def _record_split(run: Path, fold: int | str, split: Split) -> None:
    """Record the run's fold in ``run.json`` the first time; refuse a different one later."""
    info = read_run_info(run)
    if info is None:
        return
    recorded = info.get("split")
    if recorded is None:
        atomic_write_json(run / RUN_FILE, {**info, "split": {"fold": fold, **split.to_json()}})
    elif recorded != {"fold": fold, **split.to_json()}:
        raise RunDirError(
            f"{run}: cannot resume: fold {fold}'s cases differ from the ones the run started "
            "with (the task or --work-dir changed); start a new run in a new folder"
        )
