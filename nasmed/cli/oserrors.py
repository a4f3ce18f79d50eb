"""Turn the operating system's refusals into one line naming the path.

A read-only output folder, a full disk, a path that runs through a file, a symlink loop or a
folder without permission are not bugs of nasmed: they are the user's file system saying no. The
CLI (:func:`nasmed.cli.main.main`) turns an :class:`OSError` of those kinds into
``nasmed VERB: error: PATH: <what happened>; <what to do>`` and exit status 2. Every other
``OSError`` (and every other exception) is a bug and keeps its traceback.

The atomic writers (:mod:`decathlon.fsutil`) name their temporary files
``.<target>.<random>.tmp``; a refusal while writing one is reported under the target's name.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

__all__ = ["USER_ERRNOS", "describe_os_error", "is_user_os_error"]

# errno -> (what happened, what to do)
_MEANING: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "choose a folder you may write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose another path or fix its permissions"),
    errno.EROFS: ("read-only file system", "choose an output folder on a writable file system"),
    errno.ENOSPC: (
        "no space left on device",
        "free some space and run again (finished files are kept; --resume continues a run)",
    ),
    errno.EDQUOT: ("disk quota exceeded", "free some space and run again"),
    errno.EFBIG: ("file too large for this file system", "choose another output folder"),
    errno.ENOTDIR: ("a part of this path is a file, not a folder", "check the path"),
    errno.EISDIR: ("is a folder, not a file", "give a file path"),
    errno.EEXIST: ("exists and is not a folder", "remove it or choose another path"),
    errno.ELOOP: (
        "too many levels of symbolic links (a symlink loop)",
        "fix the link with `ls -l`",
    ),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EMFILE: ("too many open files", "raise `ulimit -n` or use fewer --workers"),
    errno.EIO: ("input/output error from the device", "check the disk"),
}

USER_ERRNOS: frozenset[int] = frozenset(_MEANING)

_TMP = re.compile(r"^\.(?P<target>.+)\.[^.]+\.tmp$")


def _shown(path: object) -> str:
    """The path to name: the atomic writer's temporary file becomes its target."""
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    p = Path(text)
    m = _TMP.match(p.name)
    return str(p.with_name(m["target"])) if m else text


def _root_cause(exc: BaseException) -> OSError | None:
    """``exc`` if it is such an ``OSError``, or the one it directly wraps (torch's
    ``RuntimeError`` around a failed write); deeper chains are left to the traceback."""
    for cur in (exc, exc.__cause__ or exc.__context__):
        if isinstance(cur, OSError) and cur.errno in USER_ERRNOS:
            return cur
    return None


def is_user_os_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is an ``OSError`` of a kind a user causes."""
    return _root_cause(exc) is not None


def describe_os_error(exc: BaseException) -> str:
    """One line: ``PATH: what happened; what to do`` (``PATH`` omitted when unknown).

    Args:
        exc: an exception for which :func:`is_user_os_error` holds (torch, for one, wraps a
            failed write of a file object in a ``RuntimeError`` whose cause is the ``OSError``).
    """
    err = _root_cause(exc)
    if err is None:
        return " ".join(str(exc).split())
    what, todo = _MEANING[int(err.errno or 0)]
    if err.errno == errno.EEXIST and err.filename is not None and Path(err.filename).is_dir():
        what = "already exists"
    names = [_shown(n) for n in (err.filename, err.filename2) if n is not None]
    where = " -> ".join(names)
    return f"{where}: {what}; {todo}" if where else f"{what}; {todo}"
