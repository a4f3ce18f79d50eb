"""Declarative search spaces for nasmed (YAML files + a typed loader).

>>> import searchspaces
>>> searchspaces.list()                       # the shipped spaces
['scnas', 'scnas-shared', 'scnas-small', 'scnas-v1']
>>> space = searchspaces.load("scnas-small")  # or a path to a YAML file
>>> space.size() > 10**6
True

The format is documented in docs/search.md; this package imports no torch.
"""

from __future__ import annotations

import builtins
from pathlib import Path

import yaml

from searchspaces.errors import SpaceError
from searchspaces.schema import (
    SCHEMA_VERSION,
    CellOutput,
    CellType,
    Layer,
    SearchSpace,
    Sharing,
    Skip,
    Upsample,
)

__all__ = [
    "SCHEMA_VERSION",
    "CellOutput",
    "CellType",
    "Layer",
    "SearchSpace",
    "Sharing",
    "Skip",
    "SpaceError",
    "Upsample",
    "list",
    "list_spaces",
    "load",
    "space_path",
]

_HERE = Path(__file__).resolve().parent


def list_spaces() -> builtins.list[str]:
    """Names of the spaces shipped with the package, sorted."""
    return sorted(p.stem for p in _HERE.glob("*.yaml"))


list = list_spaces


def space_path(name: str) -> Path:
    """The YAML file of the shipped space ``name``."""
    return _HERE / f"{name}.yaml"


def load(name_or_path: str | Path) -> SearchSpace:
    """Load and validate a space by shipped name (``"scnas"``) or from a YAML file.

    Raises:
        SpaceError: the name is unknown, the file cannot be read or parsed, or it is invalid.
    """
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists() or "/" in text:
        path = candidate
    else:
        path = space_path(text)
        if not path.is_file():
            raise SpaceError(
                f"unknown search space {text!r}; shipped: {', '.join(list_spaces())} "
                "(or give a path to a .yaml file)"
            )
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpaceError(f"search space {path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise SpaceError(f"search space {path}: invalid YAML{at}") from None
    if not isinstance(data, dict):
        raise SpaceError(f"search space {path}: the file must hold a mapping of fields")
    return SearchSpace.from_dict(data, source=str(path))
