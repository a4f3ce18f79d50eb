"""The found architecture as plain data: frozen dataclasses and ``genotype.json``.

A :class:`Genotype` holds, per architecture key of its space (a cell type, or a layer when every
layer is searched separately), the kept inputs of every node and the operation of every kept
edge; plus the space's name and content hash, the schema version, the seed and the search
settings. It loads with no torch and no pickle.

``genotype.json``::

    {"schema_version": 1, "space": "scnas", "space_hash": "<sha256>", "seed": 0,
     "search": {"mode": "sampled", ...},
     "cells": {"encoder": [{"node": 1, "inputs": [{"from": 0, "op": "conv3"}]}, ...], ...}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_write_text
from nasmed.errors import GenotypeError
from searchspaces import SearchSpace

__all__ = [
    "GENOTYPE_SCHEMA_VERSION",
    "CellGenotype",
    "EdgeChoice",
    "Genotype",
    "NodeChoice",
    "check_space",
    "load",
    "save",
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
        source: where it was read from (the file), named by every error about it; not saved.
    """

    space: str
    space_hash: str
    cells: tuple[CellGenotype, ...]
    seed: int | None = None
    search: Mapping[str, Any] = field(default_factory=dict, hash=False)
    schema_version: int = GENOTYPE_SCHEMA_VERSION
    source: str = field(default="genotype", compare=False, hash=False, repr=False)

    def cell(self, key: str) -> CellGenotype:
        """The structure of architecture key ``key``."""
        for cell in self.cells:
            if cell.key == key:
                return cell
        raise KeyError(f"genotype has no cell {key!r}; it has {[c.key for c in self.cells]}")

    def to_dict(self) -> dict[str, Any]:
        """The plain-JSON form."""
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

    def to_text(self) -> str:
        """A readable listing of the cells, one line per node."""
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
            lines.append(f"  output = 1x1x1 conv block(concat(node 1..{len(cell.nodes)}))")
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
            return replace(_parse(data), source=source)
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


def _parse(data: Any) -> Genotype:
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
    return Genotype(space, space_hash, tuple(cells), seed, search, version)


def save(genotype: Genotype, path: str | os.PathLike[str]) -> None:
    """Write ``genotype`` to ``path`` atomically (same as ``genotype.save(path)``)."""
    genotype.save(path)


def load(path: str | os.PathLike[str]) -> Genotype:
    """Read a genotype file (same as ``Genotype.load(path)``)."""
    return Genotype.load(path)


def check_space(genotype: Genotype, space: SearchSpace) -> None:
    """Check that ``genotype`` belongs to ``space`` as it is now.

    Raises:
        GenotypeError: another space, a changed space (content hash mismatch), or cells that do
            not fit the space's structure.
    """
    src = genotype.source
    if genotype.space != space.name:
        raise GenotypeError(
            f"{src}: genotype is from search space {genotype.space!r}, not {space.name!r}"
        )
    if genotype.space_hash != space.content_hash():
        raise GenotypeError(
            f"{src}: search space {space.name!r} changed since the genotype was made (content hash "
            f"{space.content_hash()[:12]} != {genotype.space_hash[:12]}); search again or "
            "restore the space's file"
        )
    keys = [cell.key for cell in genotype.cells]
    if keys != list(space.arch_keys()):
        raise GenotypeError(
            f"{src}: genotype cells {keys} do not match space cells {list(space.arch_keys())}"
        )
    for cell in genotype.cells:
        if len(cell.nodes) != space.nodes:
            raise GenotypeError(
                f"{src}: cell {cell.key!r} has {len(cell.nodes)} nodes; the space has {space.nodes}"
            )
        for i, node in enumerate(cell.nodes, start=1):
            if len(node.inputs) != space.kept(i):
                raise GenotypeError(
                    f"{src}: cell {cell.key!r} node {i} keeps {len(node.inputs)} inputs; "
                    f"the space keeps {space.kept(i)}"
                )
            for edge in node.inputs:
                if edge.op not in space.ops:
                    raise GenotypeError(
                        f"{src}: cell {cell.key!r} node {i}: operation {edge.op!r} is not in space "
                        f"{space.name!r} ({', '.join(space.ops)})"
                    )
