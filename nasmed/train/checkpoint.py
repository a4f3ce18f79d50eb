"""Atomic checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors, state dicts and plain Python values (no pickled objects), so it
loads safely. RNG states are stored as tensors and plain integers. A checkpoint is written to a
temporary file and renamed over the target: a kill during the write leaves the previous one.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decathlon.fsutil import atomic_open
from decathlon.paths import why_unusable
from nasmed.errors import RunDirError
from nasmed.weights import check_finite, load_weights_file

__all__ = [
    "capture_rng",
    "load_checkpoint",
    "restore_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

log = logging.getLogger(__name__)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Save ``state`` to ``path`` atomically; returns the path."""
    p = Path(path)
    with atomic_open(p, "wb") as f:
        torch.save(state, f)
    return p


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        RunDirError: the file is missing or not a nasmed checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise RunDirError(f"{p}: checkpoint {why_unusable(p)}")
    state = load_weights_file(p, map_location=map_location)
    if not isinstance(state, dict):
        raise RunDirError(f"{p}: checkpoint is not a dict")
    check_finite(state, p)
    return state


def restore_checkpoint(
    path: str | os.PathLike[str],
    apply: Callable[[dict[str, Any]], None],
    map_location: Any = "cpu",
) -> None:
    """Load the checkpoint at ``path`` and hand it to ``apply`` (a ``load_checkpoint_state``).

    Raises:
        RunDirError: the file is not loadable, or is not a checkpoint of this kind of run (a
            foreign dict, another verb's checkpoint, another network): one line naming it.
    """
    state = load_checkpoint(path, map_location=map_location)
    try:
        apply(state)
    except KeyError as exc:
        raise RunDirError(
            f"{path}: not a checkpoint of this run (it has no {exc.args[0]!r}; keys: "
            f"{', '.join(sorted(map(str, state))[:8])})"
        ) from None
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunDirError(f"{path}: checkpoint does not fit this run ({first})") from None


def capture_rng(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Python, NumPy (legacy global), torch CPU (and CUDA) RNG states, weights-only safe."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np.asarray(np_keys).copy()),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ],
        "torch": torch.get_rng_state(),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(
    state: dict[str, Any], generators: dict[str, torch.Generator] | None = None
) -> None:
    """Inverse of :func:`capture_rng`."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    for key, gen in (generators or {}).items():
        if key in state.get("generators", {}):
            gen.set_state(state["generators"][key])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
