"""Atomic file writes: a reader never sees half a file, and a killed writer leaves nothing.

Everything nasmed and decathlon write (plans, caches, checkpoints, genotypes, metrics) goes
through these helpers: the data is written to a temporary file in the target's folder, flushed,
fsynced and renamed over the target in one step.

Permissions follow the process umask exactly as ``open`` and ``mkdir`` would (files
``0o666 & ~umask``, folders ``0o777 & ~umask``): :func:`tempfile.mkstemp` and
:func:`tempfile.mkdtemp` create private ``0600``/``0700`` entries, which would leave every model
and prediction unreadable to colleagues on a shared machine, so :func:`atomic_open` and
:func:`make_temp_dir` widen them to what the umask allows before the rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from decathlon.errors import DecathlonError

__all__ = [
    "atomic_open",
    "atomic_save_npy",
    "atomic_write_json",
    "atomic_write_text",
    "ensure_out_dir",
    "file_mode",
    "folder_mode",
    "make_temp_dir",
]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask (read by setting and restoring it: POSIX has no read-only call)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode ``mkdir`` would give a new folder: ``0o777 & ~umask``."""
    return 0o777 & ~_umask()


def make_temp_dir(parent: str | os.PathLike[str], prefix: str, suffix: str = "") -> Path:
    """A new hidden temporary folder in ``parent`` (renamed into place by the caller), with the
    permissions ``mkdir`` would give it rather than :func:`tempfile.mkdtemp`'s ``0700``."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    os.chmod(tmp, folder_mode())
    return tmp


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` and move it over ``path`` on success.

    Args:
        path: the final file.
        mode: ``"w"`` (text) or ``"wb"`` (binary).

    Yields:
        The open temporary file. If the block raises, the temporary file is removed and
        ``path`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, file_mode())
        encoding = None if "b" in mode else "utf-8"
        with open(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike[str], data: Any, *, indent: int = 2) -> None:
    """Write ``data`` as JSON (sorted keys are not imposed; order is kept) atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save ``array`` as a ``.npy`` file (memory-mappable with ``np.load(mmap_mode='r')``)."""
    with atomic_open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def ensure_out_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder ``path`` (and parents) or fail with one clear line.

    Raises:
        DecathlonError: ``path`` exists and is not a folder, or cannot be created.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise DecathlonError(f"{out}: output path exists and is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DecathlonError(f"{out}: cannot create output folder ({exc.strerror})") from exc
    return out
