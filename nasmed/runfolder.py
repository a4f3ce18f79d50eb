"""The run-folder object: a run's folder opened, locked, resumed or cleaned up in one place.

Built on :mod:`nasmed.rundir` (the checks, the lock, ``run.json``). ``train``, ``transfer`` and
``search`` hold a :class:`RunFolder` for the life of a run: :meth:`RunFolder.open` checks and
locks it (rank 0, shared with every rank) and says whether an earlier run is resumed; the
settings named ``mutable`` may change on resume (``workers``; ``time_budget``, for training and
search alike) and are recorded anew in ``run.json``; every other recorded setting must be the
same (a setting added after a run was recorded passes when it keeps the old behaviour,
``added``). :meth:`RunFolder.discard` removes what a fresh run wrote when it fails before its
first epoch, :meth:`RunFolder.release` drops the lock.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_write_json
from nasmed.distributed import is_main, run_on_main
from nasmed.rundir import RUN_FILE, prepare_run_dir, read_run_info, release_run_dir

__all__ = ["RunFolder"]


@dataclass(frozen=True)
class RunFolder:
    """A run's folder, opened and locked (:meth:`open`), released at the end (:meth:`release`).

    Attributes:
        path: the folder.
        kind: the run's kind.
        resumed: whether an earlier run is being continued.
        existed: whether the folder existed before this start (what :meth:`discard` keeps).
    """

    path: Path
    kind: str
    resumed: bool
    existed: bool

    @classmethod
    def open(
        cls,
        run_dir: str | os.PathLike[str],
        kind: str,
        settings: dict[str, Any],
        *,
        resume: bool = False,
        mutable: Iterable[str] = (),
        added: Mapping[str, Any] | None = None,
        inputs: Iterable[str | os.PathLike[str] | None] = (),
        task_root: str | os.PathLike[str] | None = None,
        checkpoint: str | None = None,
        complete: str | None = None,
    ) -> RunFolder:
        """Check, create and lock the folder (rank 0; every rank gets the result).

        ``settings`` are recorded in ``run.json``; on resume every one not in ``mutable`` must
        equal the recorded value (``added``: see :func:`prepare_run_dir`), and the ``mutable``
        ones are recorded anew. The other arguments are :func:`prepare_run_dir`'s.

        Raises:
            RunDirError: see :func:`prepare_run_dir`.
        """
        path = Path(run_dir)
        free = set(mutable)

        def prepare() -> RunFolder:
            existed = path.is_dir()
            folder, resumed = prepare_run_dir(
                path,
                kind,
                settings,
                resume=resume,
                immutable=tuple(k for k in settings if k not in free),
                added=added,
                inputs=inputs,
                task_root=task_root,
                checkpoint=checkpoint,
                complete=complete,
            )
            if resumed:
                _record_mutable(folder, {k: settings[k] for k in free if k in settings})
            return cls(folder, kind, resumed, existed)

        return run_on_main(prepare)

    def discard(self) -> None:
        """Remove what a fresh run wrote before it failed (rank 0; a resumed run keeps all)."""
        if self.resumed or not is_main() or not self.path.is_dir():
            return
        if not self.existed:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for entry in self.path.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def release(self) -> None:
        """Drop this process's lock on the folder."""
        release_run_dir(self.path)


def _record_mutable(run: Path, values: dict[str, Any]) -> None:
    info = read_run_info(run)
    if info is None or not values:
        return
    old = info.get("settings", {})
    if all(old.get(k) == v for k, v in values.items()):
        return
    atomic_write_json(run / RUN_FILE, {**info, "settings": {**old, **values}})
