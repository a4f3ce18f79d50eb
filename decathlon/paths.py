"""Say why a path cannot be used: missing, a symlink loop, a dangling link, no permission.

``Path.exists()`` and ``Path.is_file()`` answer ``False`` for a symlink loop and for a folder
without permission, so a message built on them says "not found" for a file that is there. These
helpers ask the file system itself, so the one-line error names the real problem.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

__all__ = ["named_os_error", "why_unusable"]


def why_unusable(path: str | os.PathLike[str], kind: str = "file") -> str:
    """Why ``path`` is not a usable ``kind`` (``"file"``, ``"folder"`` or a word such as
    ``"input"`` that stands for a file), in a few words.

    Returns:
        ``"file not found"``, ``"too many levels of symbolic links (a symlink loop)"``,
        ``"broken symbolic link (its target ... does not exist)"``, ``"permission denied"``,
        ``"is a folder, not a file"``, ... (what follows ``PATH: `` in a message).
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "too many levels of symbolic links (a symlink loop)"
        if exc.errno == errno.ENOENT and p.is_symlink():
            return f"broken symbolic link (its target {os.readlink(p)} does not exist)"
        if exc.errno == errno.EACCES:
            return "permission denied"
        if exc.errno == errno.ENOTDIR:
            return "a part of this path is a file, not a folder"
        if exc.errno == errno.ENOENT:
            return f"{kind} not found"
        return exc.strerror or type(exc).__name__
    is_dir = stat.S_ISDIR(st.st_mode)
    if kind != "folder" and is_dir:
        return "is a folder, not a file"
    if kind == "folder" and not is_dir:
        return "is a file, not a folder"
    return f"not a usable {kind}"


_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def named_os_error(exc: BaseException, path: str | os.PathLike[str]) -> OSError | None:
    """The file-system error behind ``exc``, as an ``OSError`` naming ``path``, or ``None``.

    A failed ``write`` names no file, numpy reports a short write (a full disk) as
    ``"N requested and M written"`` without an errno, and torch wraps the ``OSError`` of a file
    object in a ``RuntimeError``; a writer that knows its target calls this to say which file.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError):
            if cur.errno is None and _SHORT_WRITE.match(str(cur)):
                return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
            if cur.errno is not None:
                if cur.filename is not None:
                    return None  # already names its file
                return OSError(cur.errno, cur.strerror, os.fspath(path))
        cur = cur.__cause__ or cur.__context__
    return None
