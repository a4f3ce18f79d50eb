"""Cells drawn as graphs: one arrow per kept input, labelled with its operation."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.patches import FancyArrowPatch

import searchspaces
from nasmed.errors import GenotypeError
from nasmed.genotype import CellGenotype, EdgeChoice, Genotype, NodeChoice
from nasmed.supernet import sample_genotype
from nasmed.viz.figure import save_png
from nasmed.viz.genotype import EDGE_GID, plot_genotype

from .conftest import assert_png


def _arrows(ax: object, prefix: str) -> list[FancyArrowPatch]:
    return [
        p
        for p in ax.patches  # type: ignore[attr-defined]
        if isinstance(p, FancyArrowPatch) and (p.get_gid() or "").startswith(prefix)
    ]


@pytest.mark.parametrize("space", ["scnas-small", "scnas"])
def test_one_edge_per_kept_input(space: str, tmp_path: Path) -> None:
    genotype = sample_genotype(searchspaces.load(space), 1)
    fig = plot_genotype(genotype)
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    assert len(axes) == len(genotype.cells)
    for ax, cell in zip(axes, genotype.cells):
        assert ax.get_title() == f"cell {cell.key}"
        edges = _arrows(ax, EDGE_GID)
        assert sorted(p.get_gid() for p in edges) == sorted(
            f"{EDGE_GID} {cell.key} {s}->{n}" for s, n in cell.edges()
        )
        texts = [t.get_text() for t in ax.texts]
        for op in cell.edges().values():
            assert op in texts
        assert len(_arrows(ax, "concat")) == len(cell.nodes)
    assert_png(save_png(fig, tmp_path / "g.png"))


def test_hand_written_cell() -> None:
    cell = CellGenotype(
        "encoder",
        (
            NodeChoice((EdgeChoice(0, "conv3"),)),
            NodeChoice((EdgeChoice(0, "zero"), EdgeChoice(1, "dil3"))),
        ),
    )
    fig = plot_genotype(Genotype("x", "0" * 64, (cell,)))
    (ax,) = fig.get_axes()
    edges = {p.get_gid(): p for p in _arrows(ax, EDGE_GID)}
    assert set(edges) == {"edge encoder 0->1", "edge encoder 0->2", "edge encoder 1->2"}
    assert edges["edge encoder 0->2"].get_linestyle() == ":"  # zero edges are dotted
    assert [t.get_text() for t in ax.texts if t.get_text() in ("in", "1", "2", "out")] == [
        "in",
        "1",
        "2",
        "out",
    ]


def test_unknown_cell() -> None:
    genotype = sample_genotype(searchspaces.load("scnas-small"), 0)
    with pytest.raises(GenotypeError, match="no cell 'nope'"):
        plot_genotype(genotype, keys=["nope"])
    assert len(plot_genotype(genotype, keys=["decoder"]).get_axes()) == 1
