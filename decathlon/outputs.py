"""The output rule every verb obeys: never overwrite a file it did not create, and never write
into (or over) its own inputs.

Two checks, used by every verb that writes (``synth``, ``preprocess``, ``search``, ``train``,
``predict``, ``evaluate``, ``transfer``, ``classify``, ``demo``, ``show --png``, ``inspect --png``):

* :func:`check_separate`: an output path may not *be* an input or reference, *contain* one (an
  output folder above the task folder), or lie *inside* one (``predict --out T/imagesTs``).
* ownership: a folder a verb writes as a whole (a preprocessing work folder, a demo folder) is
  *claimed* by :func:`claim_dir`, which records the verb in a small ledger
  (``.nasmed-outputs.json``) and refuses a folder that holds files and no ledger of that verb
  (and, for ``key``, of that same source: ``preprocess`` of another task). Single files a verb
  writes into a folder it does not own (predictions, ``metrics.json``, a PNG) go through
  :func:`check_files` (before anything is written) and :func:`record_files`: an existing file may
  be replaced only when the ledger says this verb wrote it. Run folders carry ``run.json`` and
  are checked by :mod:`nasmed.rundir` with :func:`check_separate` and :func:`claim_dir`.

Nothing here is a library feature: it is the bookkeeping of which file came from where.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from decathlon.errors import DecathlonError
from decathlon.fsutil import atomic_write_json, ensure_out_dir

__all__ = [
    "DATA_FOLDERS",
    "LEDGER",
    "OutputError",
    "check_dir",
    "check_files",
    "check_outside_datasets",
    "check_separate",
    "claim_dir",
    "is_bookkeeping",
    "record_files",
]

LEDGER = ".nasmed-outputs.json"
#: Files of nasmed's own bookkeeping, ignored when a folder is tested for being empty.
_BOOKKEEPING = (LEDGER, ".nasmed.lock")


class OutputError(DecathlonError):
    """An output path would overwrite a file the verb did not write, or overlaps an input."""


def is_bookkeeping(path: Path) -> bool:
    """Whether ``path`` is one of nasmed's ledger or lock files."""
    return path.name in _BOOKKEEPING


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def check_separate(
    out: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None],
    *,
    option: str = "--out",
) -> None:
    """Refuse an output path that is, contains, or lies inside one of ``inputs``.

    Paths are compared after resolving symlinks; ``None`` entries are skipped.

    Raises:
        OutputError: naming the output, the input and the relation.
    """
    o = _resolved(out)
    for item in inputs:
        if item is None:
            continue
        i = _resolved(item)
        if o == i:
            how = "is"
        elif i.is_relative_to(o):
            how = "contains"
        elif o.is_relative_to(i):
            how = "is inside"
        else:
            continue
        raise OutputError(
            f"{out}: {option} {how} the input {item}; write the outputs to a separate folder"
        )


#: A task folder's data folders (MSD and nnU-Net raw): never written into by any verb.
DATA_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")


def check_outside_datasets(
    out: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None],
    *,
    option: str = "--out",
) -> None:
    """Refuse an output path that is or lies inside a data folder (``imagesTr``, ``labelsTr``,
    ``imagesTs``, ``labelsTs``) of the task folder (the nearest folder holding a
    ``dataset.json``) of any of ``inputs``: predicting ``T/imagesTs`` into ``T/labelsTr`` would
    mix label maps into the ground truth even when no file is replaced.

    Raises:
        OutputError: naming the output and the data folder.
    """
    o = _resolved(out)
    for item in inputs:
        if item is None:
            continue
        i = _resolved(item)
        for root in (i, *i.parents):
            if (root / "dataset.json").is_file():
                break
        else:
            continue
        for name in DATA_FOLDERS:
            data = root / name
            if o == data or o.is_relative_to(data):
                raise OutputError(
                    f"{out}: {option} is inside the task folder's {name} ({data}), which nasmed "
                    "never writes into; write the outputs to a separate folder"
                )


def _read_ledger(folder: Path) -> dict[str, Any]:
    path = folder / LEDGER
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(not is_bookkeeping(p) for p in folder.iterdir())


def check_dir(folder: str | os.PathLike[str], verb: str, *, key: str | None = None) -> Path:
    """Check that ``verb`` may write the folder ``folder`` as a whole (nothing is written).

    Allowed: a missing or empty folder, or one whose ledger says ``verb`` (with the same
    ``key``, when given) wrote it.

    Raises:
        OutputError: the folder is a file, holds files of another verb or of nobody we know.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: output path exists and is a file, not a folder")
    if not _holds_files(path):
        return path
    owner = _read_ledger(path).get("owner") or {}
    if owner.get("verb") != verb:
        whose = f"nasmed {owner['verb']}" if owner.get("verb") else "something other than nasmed"
        raise OutputError(
            f"{path}: folder holds files written by {whose}, not by nasmed {verb}; "
            "refusing to overwrite them: use a new or empty folder"
        )
    if key is not None and owner.get("key") not in (None, key):
        raise OutputError(
            f"{path}: folder holds the output of nasmed {verb} for {owner.get('key')}, "
            f"not {key}; use a new or empty folder"
        )
    return path


def claim_dir(folder: str | os.PathLike[str], verb: str, *, key: str | None = None) -> Path:
    """:func:`check_dir`, then create the folder and record ``verb`` (and ``key``) as its owner.

    Returns:
        The folder.
    """
    path = check_dir(folder, verb, key=key)
    ensure_out_dir(path)
    ledger = _read_ledger(path)
    owner = {"verb": verb, "key": key}
    if ledger.get("owner") != owner:
        ledger["owner"] = owner
        atomic_write_json(path / LEDGER, ledger)
    return path


def _written_by(path: Path, verb: str) -> bool:
    ledger = _read_ledger(path.parent)
    if (ledger.get("owner") or {}).get("verb") == verb:
        return True
    return bool(ledger.get("files", {}).get(path.name) == verb)


def check_files(paths: Sequence[str | os.PathLike[str]], verb: str) -> None:
    """Check, before anything is written, that ``verb`` may write each of ``paths``.

    A path that does not exist may be written; one that exists only when the ledger of its
    folder records ``verb`` as its writer.

    Raises:
        OutputError: a path is a folder, or an existing file ``verb`` did not write.
    """
    for item in paths:
        p = Path(item)
        if p.is_dir():
            raise OutputError(f"{p}: output file exists and is a folder")
        if p.exists() and not _written_by(p, verb):
            raise OutputError(
                f"{p}: exists and was not written by nasmed {verb}; refusing to overwrite it: "
                "remove it or choose another output path"
            )


def record_files(paths: Sequence[str | os.PathLike[str]], verb: str) -> None:
    """Create the folders of ``paths`` and record ``verb`` as the writer of each file."""
    by_folder: dict[Path, list[str]] = {}
    for item in paths:
        p = Path(item)
        by_folder.setdefault(p.parent, []).append(p.name)
    for folder, names in by_folder.items():
        ensure_out_dir(folder)
        ledger = _read_ledger(folder)
        files = dict(ledger.get("files", {}))
        if all(files.get(n) == verb for n in names):
            continue
        files.update({n: verb for n in names})
        ledger["files"] = files
        atomic_write_json(folder / LEDGER, ledger)
