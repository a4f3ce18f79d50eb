"""One versioned checkpoint schema for every file nasmed writes with weights, and its one loader.

A checkpoint is a dict of tensors, state dicts and plain values (``torch.load(weights_only=True)``
loads it)::

    {"schema": "nasmed.checkpoint", "version": 1, "kind": KIND,
     "model": state_dict, ... what the kind adds ...}

Kinds: ``train`` (``checkpoints/last.pt``: + ``optimizer``, ``scaler``, ``epoch``, ``rng``,
``best_dice``, ``best_epoch``, ``final_dice``, ``world_size``), ``search`` (``checkpoint.pt``:
the supernet as ``model``, + ``weight_optimizer``, ``arch_optimizer``, ``estimator``, the same
loop fields), ``weights`` (``checkpoints/best.pt``: ``model``, ``epoch``, ``dice``),
``classify`` (a classify run's ``model.pt``: ``model``, ``config``, ``classes``) and
``backbone`` (``backbone.pt``: ``model``, ``spec``). A training run's ``model.pt`` stays a plain
state dict (the deployment artifact of docs/training.md); :func:`load_model_state` reads it too.

Files written before the schema (version 0: the same dicts without the three schema keys, the
search's supernet under ``supernet`` and the classify file's under ``state_dict``) are upgraded on
load, so old run folders still resume. A file of a newer version, of another kind, or a dict of
unknown layout is refused with one line naming the file (:class:`~nasmed.errors.RunDirError`).
Writes are atomic (temporary file + rename): a kill leaves the previous checkpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from decathlon.fsutil import atomic_open
from decathlon.paths import why_unusable
from nasmed.errors import RunDirError
from nasmed.weights import check_finite, load_weights_file

__all__ = [
    "KINDS",
    "SCHEMA",
    "VERSION",
    "load_checkpoint",
    "load_model_state",
    "make_checkpoint",
    "restore_checkpoint",
    "save_checkpoint",
    "upgrade",
]

log = logging.getLogger(__name__)

SCHEMA = "nasmed.checkpoint"
VERSION = 1
KINDS = ("train", "search", "weights", "classify", "backbone")

# version 0 (before the schema): how to recognise each kind, and the keys it renamed
_LEGACY: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "train": (("model", "optimizer", "epoch", "rng"), {}),
    "search": (
        ("supernet", "weight_optimizer", "arch_optimizer", "epoch", "rng"),
        {"supernet": "model", "last_dice": "final_dice"},
    ),
    "weights": (("model", "epoch", "dice"), {}),
    "classify": (("config", "classes", "state_dict"), {"state_dict": "model"}),
    "backbone": (("format", "spec", "state_dict"), {"state_dict": "model"}),
}


def make_checkpoint(kind: str, **parts: Any) -> dict[str, Any]:
    """A checkpoint of ``kind`` holding ``parts`` (``model`` and what the kind adds)."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; one of {', '.join(KINDS)}")
    return {"schema": SCHEMA, "version": VERSION, "kind": kind, **parts}


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Save ``state`` (a :func:`make_checkpoint`) to ``path`` atomically; returns the path."""
    p = Path(path)
    with atomic_open(p, "wb") as f:
        torch.save(dict(state), f)
    return p


def _legacy_kind(state: Mapping[str, Any]) -> str | None:
    for kind, (keys, _) in _LEGACY.items():
        if all(k in state for k in keys):
            return kind
    return None


def upgrade(state: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """``state`` in the current schema (a version-0 file is converted).

    Raises:
        RunDirError: a newer version, another schema, or a dict of no known layout.
    """
    if "schema" in state:
        if state["schema"] != SCHEMA or not isinstance(state.get("version"), int):
            raise RunDirError(f"{path}: not a nasmed checkpoint (schema {state['schema']!r})")
        if state["version"] > VERSION:
            raise RunDirError(
                f"{path}: checkpoint version {state['version']} was written by a newer nasmed "
                f"(this one reads up to version {VERSION}); upgrade nasmed to use it"
            )
        return state
    kind = _legacy_kind(state)
    if kind is None:
        raise RunDirError(
            f"{path}: not a checkpoint of this run (a dict of unknown layout; keys: "
            f"{', '.join(sorted(map(str, state))[:8])})"
        )
    renames = _LEGACY[kind][1]
    parts = {renames.get(k, k): v for k, v in state.items() if k != "format"}
    log.info("%s: a checkpoint from before the versioned schema; read as %s", path, kind)
    return make_checkpoint(kind, **parts)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: Any = "cpu", *, kind: str | None = None
) -> dict[str, Any]:
    """Load and upgrade a checkpoint (``weights_only=True``; finite tensors only).

    Args:
        path: the file.
        map_location: where tensors go.
        kind: the kind the caller needs (``None``: any).

    Raises:
        RunDirError: the file is missing, not loadable, not a checkpoint, of another kind, of a
            newer version, or holds NaN/infinite values: one line naming it.
    """
    p = Path(path)
    if not p.is_file():
        raise RunDirError(f"{p}: checkpoint {why_unusable(p)}")
    state = load_weights_file(p, map_location=map_location)
    if not isinstance(state, dict):
        raise RunDirError(f"{p}: checkpoint is not a dict")
    state = upgrade(state, p)
    if kind is not None and state.get("kind") != kind:
        raise RunDirError(
            f"{p}: not a checkpoint of this run (it is a {state.get('kind')!r} checkpoint, "
            f"this run needs a {kind!r} one)"
        )
    check_finite(state, p)
    return state


def restore_checkpoint(
    path: str | os.PathLike[str],
    apply: Callable[[dict[str, Any]], None],
    map_location: Any = "cpu",
    *,
    kind: str | None = None,
) -> dict[str, Any]:
    """Load the checkpoint at ``path`` and hand it to ``apply``; returns it.

    Raises:
        RunDirError: not loadable (see :func:`load_checkpoint`), or ``apply`` finds a key
            missing or a tensor that does not fit (another network): one line naming the file.
    """
    state = load_checkpoint(path, map_location=map_location, kind=kind)
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
    return state


def load_model_state(
    path: str | os.PathLike[str], map_location: Any = "cpu"
) -> dict[str, torch.Tensor]:
    """The network weights of any nasmed file: a plain state dict (``model.pt``) or a
    checkpoint of any kind (its ``model``).

    Raises:
        RunDirError: missing or unloadable, not a state dict of tensors, or not finite.
    """
    p = Path(path)
    if not p.is_file():
        raise RunDirError(f"{p}: weights {why_unusable(p)}")
    state = load_weights_file(p, map_location=map_location)
    if isinstance(state, dict) and (
        "schema" in state or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        try:
            state = upgrade(state, p).get("model")
        except RunDirError as exc:
            if "unknown layout" not in str(exc):
                raise
            raise RunDirError(f"{p}: not a state dict of tensors (a foreign file?)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunDirError(f"{p}: not a state dict of tensors")
    check_finite(state, p)
    return state
