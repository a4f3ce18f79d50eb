"""A genotype's search space: find it, record it, check a genotype against it.

:func:`genotype_space` is the one place that finds a genotype's space (its embedded
``space_def``, else the shipped space of its name); :func:`space_record` is what a new genotype
embeds; :func:`check_space` tells whether a genotype fits a space as the space is now.
:mod:`nasmed.genotype` re-exports the three.

They read a genotype through the fields named by :class:`_Genotype`, not the class itself:
:mod:`nasmed.genotype` imports this module (a genotype's text names its space's cell output), so
this one does not import it back (no cycle). No torch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import searchspaces
from nasmed.errors import GenotypeError
from searchspaces import SearchSpace, SpaceError

__all__ = ["check_space", "genotype_space", "known_space", "space_record"]


class _Edge(Protocol):
    @property
    def op(self) -> str: ...


class _Node(Protocol):
    @property
    def inputs(self) -> Sequence[_Edge]: ...


class _Cell(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def nodes(self) -> Sequence[_Node]: ...


class _Genotype(Protocol):
    """What this module reads of a :class:`~nasmed.genotype.Genotype` (no import: no cycle)."""

    @property
    def space(self) -> str: ...

    @property
    def space_hash(self) -> str: ...

    @property
    def cells(self) -> Sequence[_Cell]: ...

    @property
    def strides(self) -> tuple[tuple[int, ...], ...] | None: ...

    @property
    def widths(self) -> tuple[float, ...] | None: ...

    @property
    def space_def(self) -> SearchSpace | None: ...

    @property
    def source(self) -> str: ...


def genotype_space(genotype: _Genotype) -> SearchSpace:
    """The search space of ``genotype``: its embedded ``space_def``, else the shipped space of
    its name (which may have changed since: :func:`check_space` tells).

    Raises:
        SpaceError: no ``space_def`` and no shipped space of that name (a genotype made before
            genotypes carried their space), or an invalid shipped file.
    """
    if genotype.space_def is not None:
        where = f"{genotype.space!r} (embedded in {genotype.source})"
        return replace(genotype.space_def, source=where)
    if genotype.space not in searchspaces.list_spaces():
        raise SpaceError(
            f"{genotype.source}: unknown search space {genotype.space!r}: not shipped, and the "
            "genotype does not carry its definition (made before genotypes of a space file "
            "did); search again with this nasmed, or copy the space's YAML file to "
            f"{searchspaces.space_path(genotype.space)}"
        )
    return searchspaces.load(searchspaces.space_path(genotype.space))


def space_record(space: SearchSpace) -> SearchSpace | None:
    """What a genotype of ``space`` embeds (its ``space_def``): ``space`` unless a shipped space
    of its name has its content hash (then the name finds it, and the file stays as it was)."""
    return None if _shipped_hash(space.name) == space.content_hash() else space


def _shipped_hash(name: str) -> str | None:
    if name not in searchspaces.list_spaces():
        return None
    path = searchspaces.space_path(name)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    return _file_hash(str(path), stamp)


@functools.lru_cache(maxsize=32)
def _file_hash(path: str, stamp: int) -> str | None:
    """Content hash of the space file ``path`` as of modification time ``stamp`` (cached:
    every genotype made asks for it)."""
    try:
        return searchspaces.load(path).content_hash()
    except SpaceError:
        return None


def known_space(genotype: _Genotype) -> SearchSpace | None:
    """The space of ``genotype`` (:func:`genotype_space`) if it still has the genotype's content
    hash, else ``None`` (what :meth:`~nasmed.genotype.Genotype.to_text` describes)."""
    try:
        space = genotype_space(genotype)
    except SpaceError:
        return None
    return space if space.content_hash() == genotype.space_hash else None


def check_space(genotype: _Genotype, space: SearchSpace) -> None:
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
    _check_macro(genotype, space)


def _check_macro(genotype: _Genotype, space: SearchSpace) -> None:
    src = genotype.source
    if genotype.strides is not None:
        if len(genotype.strides) != space.levels:
            raise GenotypeError(
                f"{src}: genotype has strides for {len(genotype.strides)} levels; space "
                f"{space.name!r} has {space.levels}"
            )
        for level, stride in enumerate(genotype.strides, start=1):
            # without stride options only the default (2 on every axis) is a choice
            allowed = space.stride_options or ((2,) * len(stride),)
            if stride not in allowed:
                raise GenotypeError(
                    f"{src}: level {level} stride {list(stride)} is not a choice of space "
                    f"{space.name!r} ({', '.join(str(list(s)) for s in allowed)})"
                )
    elif space.stride_options and not any(set(o) == {2} for o in space.stride_options):
        raise GenotypeError(
            f"{src}: genotype has no strides and the default (2 on every axis) is not a choice "
            f"of space {space.name!r}"
        )
    widths = space.width_options or (1.0,)
    if genotype.widths is not None:
        if len(genotype.widths) != space.levels + 1:
            raise GenotypeError(
                f"{src}: genotype has widths for {len(genotype.widths)} levels; space "
                f"{space.name!r} has {space.levels + 1}"
            )
        for level, w in enumerate(genotype.widths):
            if not any(abs(w - o) < 1e-9 for o in widths):
                raise GenotypeError(
                    f"{src}: level {level} width {w:g} is not a choice of space {space.name!r} "
                    f"({', '.join(f'{o:g}' for o in widths)})"
                )
    elif space.width_options and not any(abs(o - 1.0) < 1e-9 for o in space.width_options):
        raise GenotypeError(
            f"{src}: genotype has no widths and the default (1) is not a choice of space "
            f"{space.name!r}"
        )
