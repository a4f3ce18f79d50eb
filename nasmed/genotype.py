"""The found architecture as plain data: frozen dataclasses and ``genotype.json``.

A :class:`Genotype` holds, per architecture key of its space (a cell type, or a layer when every
layer is searched separately), the kept inputs of every node and the operation of every kept
edge; plus the space's name and content hash, the schema version, the seed and the search
settings. It loads with no torch and no pickle.

``genotype.json``::

    {"schema_version": 1, "space": "scnas", "space_hash": "<sha256>", "seed": 0,
     "search": {"mode": "sampled", ...},
     "cells": {"encoder": [{"node": 1, "inputs": [{"from": 0, "op": "conv3"}]}, ...], ...},
     "macro": {"strides": [[2, 2, 1], [2, 2, 2], ...], "widths": [1.0, 0.5, ...]}}

``macro`` (the macro choices of a space with ``stride_options`` / ``width_options``): the
per-axis strides of encoder levels 1..L and the channel multipliers of levels 0..L. Either key
(or ``macro``) missing means the plan's default: stride 2 on every axis, multiplier 1.

``space_def`` (last, only for a space that is not shipped: one loaded from a user's YAML file, or
a shipped name with other content): the space's fields as in its YAML file, so the genotype
builds on any machine. Finding a genotype's space (:func:`genotype_space`, :func:`space_record`)
and checking a genotype against it (:func:`check_space`) live in :mod:`nasmed.genotype_space`,
re-exported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_write_text
from nasmed.errors import GenotypeError
from nasmed.genotype_space import check_space, genotype_space, known_space, space_record
from searchspaces import SearchSpace, SpaceError

__all__ = [
    "GENOTYPE_SCHEMA_VERSION",
    "CellGenotype",
    "EdgeChoice",
    "Genotype",
    "NodeChoice",
    "check_space",
    "genotype_space",
    "load",
    "save",
    "space_record",
]

GENOTYPE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class EdgeChoice:
    """A kept edge: its source node (0 = the cell input) and its operation."""

    source: int
    op: str


@dataclass(frozen=True)
class NodeChoice:
    """The kept inputs of one intermediate node, sorted by source."""

    inputs: tuple[EdgeChoice, ...]


@dataclass(frozen=True)
class CellGenotype:
    """One cell structure: ``nodes[i - 1]`` is node ``i``."""

    key: str
    nodes: tuple[NodeChoice, ...]

    def edges(self) -> dict[tuple[int, int], str]:
        """``{(source, node): op}`` of every kept edge."""
        return {
            (e.source, i): e.op for i, node in enumerate(self.nodes, start=1) for e in node.inputs
        }


@dataclass(frozen=True)
class Genotype:
    """An architecture of a search space.

    Attributes:
        space: the space's name.
        space_hash: the space's content hash when the genotype was made.
        cells: one structure per architecture key, in the space's key order.
        seed: the search's seed, if any.
        search: search settings (mode, epochs, patch, ...), plain JSON values.
        schema_version: version of the genotype format.
        strides: per encoder level 1..L, the chosen per-axis strides (``None``: 2 on every
            axis, the plan's default).
        widths: per level 0..L, the chosen channel multiplier (``None``: 1 everywhere).
        space_def: the space itself when it is not a shipped one (:func:`space_record`), saved
            as ``space_def``; its name and content hash must be ``space`` and ``space_hash``.
        source: where it was read from (the file), named by every error about it; not saved.
    """

    space: str
    space_hash: str
    cells: tuple[CellGenotype, ...]
    seed: int | None = None
    search: Mapping[str, Any] = field(default_factory=dict, hash=False)
    schema_version: int = GENOTYPE_SCHEMA_VERSION
    strides: tuple[tuple[int, ...], ...] | None = None
    widths: tuple[float, ...] | None = None
    space_def: SearchSpace | None = field(default=None, compare=False, hash=False, repr=False)
    source: str = field(default="genotype", compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.space_def is None:
            return
        if self.space_def.name != self.space:
            raise GenotypeError(
                f"{self.source}: 'space_def' is search space {self.space_def.name!r}, but "
                f"'space' is {self.space!r}; restore the file or search again"
            )
        digest = self.space_def.content_hash()
        if digest != self.space_hash:
            raise GenotypeError(
                f"{self.source}: 'space_def' has content hash {digest[:12]}, not the genotype's "
                f"space_hash {self.space_hash[:12]} (edited since the search); restore the file "
                "or search again"
            )

    def cell(self, key: str) -> CellGenotype:
        """The structure of architecture key ``key``."""
        for cell in self.cells:
            if cell.key == key:
                return cell
        raise KeyError(f"genotype has no cell {key!r}; it has {[c.key for c in self.cells]}")

    def level_strides(
        self, space: SearchSpace, spatial_dims: int = 3
    ) -> tuple[tuple[int, ...], ...]:
        """Per encoder level 1..L the per-axis strides (the default where none were chosen)."""
        if self.strides is not None:
            return self.strides
        return tuple((2,) * spatial_dims for _ in range(space.levels))

    def level_widths(self, space: SearchSpace) -> tuple[float, ...]:
        """Per level 0..L the channel multiplier (1 where none was chosen)."""
        return self.widths if self.widths is not None else (1.0,) * (space.levels + 1)

    def to_dict(self) -> dict[str, Any]:
        """The plain-JSON form (``macro`` only when macro choices were made)."""
        out = self._base_dict()
        macro: dict[str, Any] = {}
        if self.strides is not None:
            macro["strides"] = [list(s) for s in self.strides]
        if self.widths is not None:
            macro["widths"] = list(self.widths)
        if macro:
            out["macro"] = macro
        if self.space_def is not None:
            out["space_def"] = self.space_def.to_dict()
        return out

    def _base_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "space": self.space,
            "space_hash": self.space_hash,
            "seed": self.seed,
            "search": dict(self.search),
            "cells": {
                cell.key: [
                    {"node": i, "inputs": [{"from": e.source, "op": e.op} for e in node.inputs]}
                    for i, node in enumerate(cell.nodes, start=1)
                ]
                for cell in self.cells
            },
        }

    def to_text(self, space: SearchSpace | None = None) -> str:
        """A readable listing of the cells, one line per node, and the macro choices.

        The cell output line follows the space's ``cell_output`` (``space``, or the genotype's
        space (:func:`genotype_space`) when its hash matches; otherwise it is left generic).
        """
        if space is None:
            space = known_space(self)
        lines = [
            f"genotype of search space {self.space!r} (hash {self.space_hash[:12]}), "
            f"schema {self.schema_version}, seed {self.seed}"
        ]
        if self.search:
            lines.append("search: " + ", ".join(f"{k}={v}" for k, v in self.search.items()))
        for cell in self.cells:
            lines.append(f"cell {cell.key}:")
            for i, node in enumerate(cell.nodes, start=1):
                inputs = ", ".join(
                    f"{'input' if e.source == 0 else f'node {e.source}'}: {e.op}"
                    for e in node.inputs
                )
                lines.append(f"  node {i} = sum({inputs})")
            lines.append(f"  output = {_output_text(space, len(cell.nodes))}")
        if self.strides is not None:
            lines.append(
                "strides per level 1..: " + ", ".join("x".join(map(str, s)) for s in self.strides)
            )
        if self.widths is not None:
            lines.append("widths per level 0..: " + ", ".join(f"{w:g}x" for w in self.widths))
        return "\n".join(lines)

    def to_json(self) -> str:
        """Indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "genotype") -> Genotype:
        """Parse and validate the plain-JSON form.

        Raises:
            GenotypeError: a missing or malformed field (the message names ``source``).
        """
        try:
            return _parse(data, source)
        except GenotypeError:  # from __post_init__, naming ``source`` already
            raise
        except (KeyError, TypeError, ValueError, RecursionError) as exc:
            raise GenotypeError(f"{source}: malformed genotype: {_reason(exc)}") from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "genotype") -> Genotype:
        """Parse JSON text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise GenotypeError(f"{source}: not a genotype (JSON nested too deeply)") from None
        return cls.from_dict(data, source=source)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``genotype.json`` atomically."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Genotype:
        """Read a genotype file (raises :class:`GenotypeError` when it is unreadable)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise GenotypeError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise GenotypeError(
                f"{path}: not a genotype (not UTF-8 text: byte {exc.start} is "
                f"0x{exc.object[exc.start]:02x})"
            ) from None
        return cls.from_json(text, source=str(path))


def _output_text(space: SearchSpace | None, n: int) -> str:
    nodes = f"node 1..{n}"
    if space is None:
        return f"combine({nodes}) (the space's cell_output)"
    if space.cell_output.value == "residual":
        projection = "1x1x1 conv" if space.preact else "1x1x1 conv block"
        return f"{projection}(concat({nodes})) + input"
    if space.cell_output.value == "sum":
        return f"input + sum({nodes})"
    return f"1x1x1 conv block(concat({nodes}))"


def _reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return value


def _parse(data: Any, origin: str) -> Genotype:
    if not isinstance(data, dict):
        raise TypeError("the file must hold a JSON object")
    version = _int(data["schema_version"], "schema_version")
    if version != GENOTYPE_SCHEMA_VERSION:
        raise ValueError(
            f"schema_version {version} is not supported (this nasmed reads "
            f"{GENOTYPE_SCHEMA_VERSION})"
        )
    space, space_hash = data["space"], data["space_hash"]
    if not isinstance(space, str) or not isinstance(space_hash, str):
        raise TypeError("'space' and 'space_hash' must be strings")
    seed = data.get("seed")
    if seed is not None:
        seed = _int(seed, "seed")
    search = data.get("search", {})
    if not isinstance(search, dict):
        raise TypeError("'search' must be an object")
    try:
        json.dumps(search, allow_nan=False)
    except ValueError:
        raise ValueError("'search' holds NaN or infinite values") from None
    raw_cells = data["cells"]
    if not isinstance(raw_cells, dict) or not raw_cells:
        raise TypeError("'cells' must be a non-empty object")
    cells = []
    for key, raw_nodes in raw_cells.items():
        if not isinstance(raw_nodes, list):
            raise TypeError(f"cell {key!r} must be a list of nodes")
        nodes = []
        for i, raw in enumerate(raw_nodes, start=1):
            if not isinstance(raw, dict) or _int(raw["node"], "node") != i:
                raise ValueError(f"cell {key!r}: node {i} is missing or out of order")
            inputs = []
            for edge in raw["inputs"]:
                source, op = _int(edge["from"], "from"), edge["op"]
                if not isinstance(op, str) or not 0 <= source < i:
                    raise ValueError(f"cell {key!r} node {i}: bad input {edge!r}")
                inputs.append(EdgeChoice(source, op))
            if not inputs or len({e.source for e in inputs}) != len(inputs):
                raise ValueError(f"cell {key!r} node {i}: inputs must be distinct and non-empty")
            nodes.append(NodeChoice(tuple(sorted(inputs, key=lambda e: e.source))))
        cells.append(CellGenotype(str(key), tuple(nodes)))
    strides, widths = _parse_macro(data.get("macro"))
    space_def = _parse_space_def(data.get("space_def"), space)
    return Genotype(
        space, space_hash, tuple(cells), seed, search, version, strides, widths, space_def, origin
    )


def _parse_space_def(raw: Any, name: str) -> SearchSpace | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError("'space_def' must be an object (the fields of the genotype's space)")
    try:
        return SearchSpace.from_dict(raw, source=f"{name!r} (the genotype's space_def)")
    except SpaceError as exc:
        raise ValueError(str(exc)) from None


def _parse_macro(raw: Any) -> tuple[tuple[tuple[int, ...], ...] | None, tuple[float, ...] | None]:
    if raw is None:
        return None, None
    if not isinstance(raw, dict):
        raise TypeError("'macro' must be an object")
    unknown = sorted(set(raw) - {"strides", "widths"})
    if unknown:
        raise ValueError(f"'macro' has unknown key(s) {unknown}; valid: strides, widths")
    strides = None
    if raw.get("strides") is not None:
        levels = raw["strides"]
        if not isinstance(levels, list) or not all(isinstance(s, list) for s in levels):
            raise TypeError("'macro.strides' must be a list of per-axis stride lists")
        strides = tuple(tuple(_int(a, "a stride") for a in s) for s in levels)
    widths = None
    if raw.get("widths") is not None:
        values = raw["widths"]
        if not isinstance(values, list) or not all(
            isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in values
        ):
            raise TypeError("'macro.widths' must be a list of positive numbers")
        widths = tuple(float(w) for w in values)
    return strides, widths


def save(genotype: Genotype, path: str | os.PathLike[str]) -> None:
    """Write ``genotype`` to ``path`` atomically (same as ``genotype.save(path)``)."""
    genotype.save(path)


def load(path: str | os.PathLike[str]) -> Genotype:
    """Read a genotype file (same as ``Genotype.load(path)``)."""
    return Genotype.load(path)
