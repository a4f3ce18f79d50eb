"""Run folders: one run per folder, refused when it holds another run unless resuming.

A run folder carries ``run.json`` (what kind of run, with which settings). Starting a run in a
folder that holds a different run, or any files but no ``run.json``, is a :class:`RunDirError`;
``resume=True`` continues the run recorded there and refuses changed settings.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_write_json
from decathlon.plan import Plan
from decathlon.preprocess import run_preprocess
from decathlon.splits import load_splits
from nasmed import __version__
from nasmed.distributed import is_main, run_on_main
from nasmed.errors import RunDirError

__all__ = ["RUN_FILE", "SPLIT_SEED", "prepare_run_dir", "prepare_work", "read_run_info"]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"

# Folds (and the bilevel halves) never change with a run's seed: only weights and patches do.
SPLIT_SEED = 0


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


def prepare_run_dir(
    run_dir: str | os.PathLike[str],
    kind: str,
    settings: dict[str, Any],
    *,
    resume: bool = False,
    immutable: tuple[str, ...] = (),
) -> tuple[Path, bool]:
    """Check (and create) a run folder for a run of ``kind`` with ``settings``.

    Args:
        run_dir: the folder.
        kind: the run's kind (``"search"``, ``"train"``, ...).
        settings: JSON-serialisable settings recorded in ``run.json``.
        resume: continue the run already in the folder.
        immutable: settings that must equal the recorded ones on resume (seed, space, ...).

    Returns:
        The folder and whether an earlier run is being resumed.

    Raises:
        RunDirError: the folder is a file, holds another run, or resume settings differ.
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: run folder exists and is a file")
    info = read_run_info(path) if path.is_dir() else None
    has_files = path.is_dir() and any(path.iterdir())
    if info is None:
        if has_files:
            raise RunDirError(
                f"{path}: folder is not empty and holds no {RUN_FILE}; use a new folder"
            )
        if resume:
            log.warning("%s: nothing to resume, starting a new %s run", path, kind)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            path / RUN_FILE,
            {"kind": kind, "nasmed": __version__, "created": time.time(), "settings": settings},
        )
        return path, False
    if info.get("kind") != kind:
        raise RunDirError(
            f"{path}: holds a {info.get('kind')!r} run, not {kind!r}; use a new folder"
        )
    if not resume:
        raise RunDirError(
            f"{path}: already holds a {kind} run; pass --resume to continue it or use a new folder"
        )
    old = info.get("settings", {})
    for key in immutable:
        if old.get(key) != settings.get(key):
            raise RunDirError(
                f"{path}: cannot resume with {key}={settings.get(key)!r}; "
                f"the run was started with {key}={old.get(key)!r}"
            )
    return path, True


def prepare_work(
    task_root: str | os.PathLike[str],
    run: Path,
    work_dir: str | os.PathLike[str] | None,
    *,
    workers: int,
    folds: int,
    fold: int,
    progress: bool,
) -> tuple[Path, Plan, dict[str, list[str]]]:
    """Preprocess a task for a run and pick its fold.

    Rank 0 runs :func:`decathlon.preprocess.run_preprocess` into ``work_dir`` (default
    ``RUN_DIR/work``; unchanged cases are reused) with the fixed :data:`SPLIT_SEED`, and copies
    ``plan.json`` into the run; every rank then reads the same splits.

    Returns:
        The work folder, the plan and fold ``fold``'s ``{"train": [...], "val": [...]}``.
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
    split = load_splits(work / "splits.json")[fold]
    if is_main():
        plan.save(run / "plan.json")
    return work, plan, split
