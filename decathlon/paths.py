"""Say why a path cannot be used: missing, a symlink loop, a dangling link, no permission.

``Path.exists()`` and ``Path.is_file()`` answer ``False`` for a symlink loop and for a folder
without permission, so a message built on them says "not found" for a file that is there. These
helpers ask the file system itself, so the one-line error names the real problem.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["why_unusable"]


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
