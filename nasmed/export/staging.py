"""All-or-nothing outputs of the exporters: files written next to a sidecar, folders staged.

A model file and its sidecar JSON (format, opset, the checked tolerance) are written to temporary
names in the target folder and renamed only when both are complete; a folder (a MONAI bundle) is
built in a temporary sibling and renamed onto the target. A failed export leaves nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_open
from nasmed.errors import ConfigError

__all__ = ["sidecar_path", "staged_dir", "write_with_sidecar"]


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def write_with_sidecar(path: str | os.PathLike[str], data: bytes, meta: dict[str, Any]) -> Path:
    """Write ``data`` to ``path`` and ``meta`` to its sidecar; neither appears unless both do."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{target}: output path is a folder; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    side = sidecar_path(target)
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(atomic_open(target, "wb"))
        g = stack.enter_context(atomic_open(side, "w"))
        f.write(data)
        g.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return target


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; rename it onto ``target`` on success.

    Raises:
        ConfigError: ``target`` exists and is a file or a non-empty folder.
    """
    out = Path(target)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: output exists and is not an empty folder; choose a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
