"""The preprocessed cache: one memory-mappable array file per case, plus its properties.

Per case::

    <case>.npy        float32 (C, x, y, z) image
    <case>_seg.npy    int8/int16 (1, x, y, z) label map
    <case>_fg.npy     int32 (N, 4) sampled foreground voxels: class, x, y, z (for the sampler)
    <case>.json       properties: original geometry, crop box, shapes, sources, plan hash

The JSON is written last, so a case whose JSON exists is complete. It records each array file's
shape, dtype and size in bytes; :func:`check_cached_case` compares them with the files (reading
only the ``.npy`` headers), so a truncated or replaced file is found in microseconds.
:func:`preprocess_task` skips cases whose source files (size, mtime), plan hash and array files
are unchanged, and rebuilds a damaged case; loading a damaged case is a one-line error.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np
from tqdm import tqdm

from decathlon.caseprep import PreprocessedCase, preprocess_case
from decathlon.errors import DatasetError
from decathlon.fingerprint import source_stamp
from decathlon.fsutil import atomic_save_npy, atomic_write_json
from decathlon.plan import Plan
from decathlon.properties import CaseProperties

if TYPE_CHECKING:
    from decathlon.datalist import Case, Task

__all__ = [
    "case_is_current",
    "case_sources",
    "check_cached_case",
    "load_cached_case",
    "load_class_locations",
    "npy_header",
    "preprocess_task",
]

log = logging.getLogger(__name__)


def case_sources(case: Case) -> dict[str, list[int]]:
    """Size and mtime of each file of ``case`` (see :func:`~decathlon.fingerprint.source_stamp`)."""
    return source_stamp(case.files)


def _paths(cache_dir: Path, name: str) -> dict[str, Path]:
    return {
        "image": cache_dir / f"{name}.npy",
        "seg": cache_dir / f"{name}_seg.npy",
        "fg": cache_dir / f"{name}_fg.npy",
        "props": cache_dir / f"{name}.json",
    }


def npy_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype of the open ``.npy`` file ``f`` (left at the data)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _describe_npy(path: Path) -> dict[str, Any]:
    """What the properties record of an array file: shape, dtype, size in bytes."""
    with open(path, "rb") as f:
        shape, _, dtype = npy_header(f)
    return {"shape": list(shape), "dtype": dtype.str, "bytes": path.stat().st_size}


def _npy_problem(path: Path, expected: dict[str, Any]) -> str | None:
    try:
        with open(path, "rb") as f:
            shape, _, dtype = npy_header(f)
            data_start = f.tell()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as exc:
        return f"unreadable header ({exc})"
    need = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != need or size != int(expected.get("bytes", -1)):
        return f"truncated or damaged ({size} bytes, expected {expected.get('bytes')})"
    if list(shape) != list(expected.get("shape", [])) or dtype.str != expected.get("dtype"):
        want = f"{expected.get('dtype')} {expected.get('shape')}"
        return f"holds {dtype.str} {list(shape)}, expected {want}"
    return None


def check_cached_case(
    cache_dir: str | os.PathLike[str], name: str, props: dict[str, Any] | None = None
) -> str | None:
    """A one-line problem if a cached case's array files do not match its properties.

    Compares each ``.npy`` file's header and size with what the properties recorded when it
    was written (no data is read). Returns ``None`` when the case is intact.
    """
    paths = _paths(Path(cache_dir), name)
    if props is None:
        try:
            props = json.loads(paths["props"].read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"{paths['props']}: unreadable cache properties ({exc})"
    arrays = props.get("arrays") if isinstance(props, dict) else None
    if not isinstance(arrays, dict) or "image" not in arrays:
        return f"{paths['props']}: made by an older nasmed (no array sizes recorded)"
    for key, expected in arrays.items():
        if key not in paths or not isinstance(expected, dict):
            return f"{paths['props']}: unknown cache entry {key!r}"
        problem = _npy_problem(paths[key], expected)
        if problem is not None:
            return f"{paths[key]}: cache file {problem}"
    return None


def case_is_current(cache_dir: str | os.PathLike[str], case: Case, plan: Plan) -> bool:
    """True when the cache holds ``case``, intact, made from its current source files with
    ``plan``."""
    paths = _paths(Path(cache_dir), case.name)
    try:
        props = json.loads(paths["props"].read_text(encoding="utf-8"))
        sources = case_sources(case)
    except (OSError, ValueError):
        return False
    if props.get("plan_hash") != plan.preprocessing_hash() or props.get("sources") != sources:
        return False
    needed = {"image"} | ({"seg", "fg"} if case.label is not None else set())
    if not needed <= set(props.get("arrays") or {}):
        return False
    problem = check_cached_case(cache_dir, case.name, props)
    if problem is not None:
        log.warning("%s; rebuilding case %s", problem, case.name)
        return False
    return True


def _write_case(cache_dir: Path, name: str, pre: PreprocessedCase, sources: dict[str, Any]) -> None:
    paths = _paths(cache_dir, name)
    paths["props"].unlink(missing_ok=True)  # the case is incomplete until its JSON is back
    atomic_save_npy(paths["image"], pre.array)
    if pre.seg is not None:
        atomic_save_npy(paths["seg"], pre.seg)
        rows = [
            np.concatenate([np.full((len(v), 1), k, dtype=np.int32), v], axis=1)
            for k, v in sorted(pre.class_locations.items())
        ]
        fg = np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int32)
        atomic_save_npy(paths["fg"], fg)
    arrays = {k: _describe_npy(paths[k]) for k in ("image", "seg", "fg") if paths[k].is_file()}
    if pre.seg is None:
        arrays = {"image": arrays["image"]}
    atomic_write_json(
        paths["props"],
        {"name": name, **pre.properties.to_json(), "sources": sources, "arrays": arrays},
    )


def _preprocess_one(args: tuple[Case, Plan, Path]) -> str:
    from decathlon.datalist import read_case

    case, plan, cache_dir = args
    sources = case_sources(case)
    image, label = read_case(case, num_channels=plan.num_channels, labels=plan.labels)
    _write_case(cache_dir, case.name, preprocess_case(image, label, plan), sources)
    return case.name


def preprocess_task(
    task: Task,
    plan: Plan,
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 2,
    progress: bool = True,
) -> list[str]:
    """Preprocess every training case of ``task`` into the cache ``out_dir``.

    Cases already cached from the same source files and plan are skipped.

    Args:
        task: the loaded task.
        plan: the plan to apply.
        out_dir: the cache folder (created).
        workers: processes working in parallel (1: in this process).
        progress: show a tqdm bar.

    Returns:
        The names of all cached training cases, in task order.
    """
    cache = Path(out_dir)
    cache.mkdir(parents=True, exist_ok=True)
    todo = [c for c in task.training if not case_is_current(cache, c, plan)]
    skipped = len(task.training) - len(todo)
    if skipped:
        log.info("cache %s: %d case(s) unchanged, %d to preprocess", cache, skipped, len(todo))
    jobs = [(c, plan, cache) for c in todo]
    bar: dict[str, Any] = dict(
        total=len(jobs), desc="preprocess", unit="case", disable=not progress or not jobs
    )
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            for _ in tqdm(pool.map(_preprocess_one, jobs), **bar):
                pass
    else:
        for job in tqdm(jobs, **bar):
            _preprocess_one(job)
    return [c.name for c in task.training]


def load_cached_case(
    cache_dir: str | os.PathLike[str], name: str, mmap: bool = True
) -> tuple[np.ndarray, np.ndarray | None, CaseProperties]:
    """Load a cached case: ``(image, seg or None, properties)``.

    Args:
        cache_dir: the cache folder (``WORK_DIR/cache``).
        name: the case name.
        mmap: memory-map the arrays read-only instead of reading them.

    Raises:
        DatasetError: the case is not in the cache (or incomplete, or its properties are
            malformed).
    """
    paths = _paths(Path(cache_dir), name)
    try:
        props = json.loads(paths["props"].read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(
            f"{paths['props']}: case {name!r} is not in the cache; run `nasmed preprocess`"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{paths['props']}: unreadable cache properties ({exc})") from exc
    problem = check_cached_case(cache_dir, name, props)
    if problem is not None:
        raise DatasetError(f"{problem}; run `nasmed preprocess` again to rebuild it")
    mode: Literal["r"] | None = "r" if mmap else None
    image = np.load(paths["image"], mmap_mode=mode, allow_pickle=False)
    seg = (
        np.load(paths["seg"], mmap_mode=mode, allow_pickle=False) if paths["seg"].exists() else None
    )
    return image, seg, CaseProperties.from_json(props, source=str(paths["props"]))


def load_class_locations(cache_dir: str | os.PathLike[str], name: str) -> dict[int, np.ndarray]:
    """The cached foreground voxels of a case: ``{class: (N, 3) int32}`` (empty if none)."""
    path = _paths(Path(cache_dir), name)["fg"]
    if not path.exists():
        return {}
    rows = np.load(path, allow_pickle=False)
    return {int(k): rows[rows[:, 0] == k, 1:] for k in np.unique(rows[:, 0])}
