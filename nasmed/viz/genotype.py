"""A genotype's cells drawn as graphs (matplotlib only; no graphviz).

Each cell is one panel: the cell input ``in``, the intermediate nodes ``1..N`` and the output
``out`` left to right. Every kept input of a node is one arrow labelled with its operation (its
colour names the operation; ``zero`` edges are dotted). Thin grey dashed lines show the nodes
concatenated into the output (then projected by a 1x1x1 conv block).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from nasmed.errors import GenotypeError
from nasmed.genotype import CellGenotype, Genotype
from nasmed.viz.figure import new_figure

__all__ = ["EDGE_GID", "op_color", "plot_cell", "plot_genotype"]

#: ``gid`` prefix of the arrows that are kept edges (tests and tools can find them).
EDGE_GID = "edge"
_CONCAT_GID = "concat"

_OP_COLORS = {
    "conv3": "#1f77b4",
    "p3d331": "#2ca02c",
    "p3d313": "#17becf",
    "p3d133": "#bcbd22",
    "dil3": "#9467bd",
    "dw3": "#ff7f0e",
    "conv1": "#8c564b",
    "identity": "#7f7f7f",
    "zero": "#c7c7c7",
}
_OTHER = ("#d62728", "#e377c2", "#393b79", "#637939", "#8c6d31", "#843c39")


def op_color(op: str) -> str:
    """The colour of operation ``op`` in every cell drawing."""
    if op in _OP_COLORS:
        return _OP_COLORS[op]
    return _OTHER[sum(map(ord, op)) % len(_OTHER)]


def _node(ax: Axes, x: float, text: str, color: str) -> None:
    ax.text(
        x,
        0.0,
        text,
        ha="center",
        va="center",
        fontsize=8,
        zorder=4,
        bbox={"boxstyle": "circle,pad=0.35", "fc": color, "ec": "#333333", "lw": 0.8},
    )


def _arrow(
    ax: Axes, start: float, end: float, rad: float, *, color: str, style: str, gid: str
) -> FancyArrowPatch:
    arrow = FancyArrowPatch(
        (start, 0.0),
        (end, 0.0),
        connectionstyle=f"arc3,rad={rad}",
        arrowstyle="-|>",
        mutation_scale=9,
        shrinkA=11,
        shrinkB=11,
        color=color,
        linestyle=style,
        lw=1.4 if gid.startswith(EDGE_GID) else 0.7,
        zorder=2 if gid.startswith(EDGE_GID) else 1,
    )
    arrow.set_gid(gid)
    ax.add_patch(arrow)
    return arrow


# Arc heights (data units; one unit between neighbouring nodes): base + step * (span - 2).
_EDGE_ARC = (0.35, 0.3)
_CONCAT_ARC = (0.25, 0.12)


def _arc_height(span: int, arc: tuple[float, float]) -> float:
    return 0.0 if span <= 1 else arc[0] + arc[1] * (span - 2)


def _extent(nodes: int) -> tuple[float, float, float, float]:
    """Data limits of a cell of ``nodes`` nodes: left, right, bottom, top."""
    top = _arc_height(nodes, _EDGE_ARC) + 0.35
    bottom = -_arc_height(nodes, _CONCAT_ARC) - 0.35
    return -0.6, nodes + 1.6, min(bottom, -0.6), max(top, 0.6)


def plot_cell(ax: Axes, cell: CellGenotype) -> list[FancyArrowPatch]:
    """Draw one cell on ``ax``; returns the arrows of its kept edges (one per kept input)."""
    n = len(cell.nodes)
    out_x = n + 1.0
    edges = []
    for i, node in enumerate(cell.nodes, start=1):
        for e in node.inputs:
            span = i - e.source
            # neighbours: straight; longer edges: arcs above, one height per span
            height = _arc_height(span, _EDGE_ARC)
            color = op_color(e.op)
            edges.append(
                _arrow(
                    ax,
                    e.source,
                    i,
                    -2.0 * height / span,
                    color=color,
                    style=":" if e.op == "zero" else "-",
                    gid=f"{EDGE_GID} {cell.key} {e.source}->{i}",
                )
            )
            ax.text(
                (e.source + i) / 2,
                height,  # the arc's midpoint (quadratic Bezier, equal aspect)
                e.op,
                ha="center",
                va="center",
                fontsize=7,
                color=color,
                zorder=3,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
            )
    for i in range(1, n + 1):
        span = int(out_x) - i
        rad = 2.0 * _arc_height(span, _CONCAT_ARC) / span  # below the axis
        _arrow(ax, i, out_x, rad, color="#999999", style="--", gid=f"{_CONCAT_GID} {cell.key} {i}")
    _node(ax, 0.0, "in", "#e8e8e8")
    for i in range(1, n + 1):
        _node(ax, float(i), str(i), "#dbe9f6")
    _node(ax, out_x, "out", "#fde0c5")
    left, right, bottom, top = _extent(n)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_title(f"cell {cell.key}", fontsize=9)
    ax.axis("off")
    return edges


def plot_genotype(
    genotype: Genotype, *, keys: Sequence[str] | None = None, title: str | None = None
) -> Figure:
    """Every cell of ``genotype`` (or only ``keys``) drawn as a graph, one panel each.

    Args:
        genotype: the architecture.
        keys: the cells to draw (architecture keys); default all, in the genotype's order.
        title: the figure's title; default the space's name and hash.

    Returns:
        A figure with one axes per cell, in two columns when there are more than four cells.

    Raises:
        GenotypeError: a key the genotype does not have.
    """
    names = list(keys) if keys is not None else [c.key for c in genotype.cells]
    known = {c.key for c in genotype.cells}
    missing = [k for k in names if k not in known]
    if missing or not names:
        raise GenotypeError(
            f"genotype has no cell {missing[0] if missing else '(none asked)'!r}; "
            f"it has {sorted(known)}"
        )
    cells = [genotype.cell(k) for k in names]
    left, right, bottom, top = _extent(max(len(c.nodes) for c in cells))
    ncols = 1 if len(cells) == 1 or (len(cells) <= 4 and right - left < 7) else 2
    nrows = -(-len(cells) // ncols)
    # one inch per unit (the distance between neighbouring nodes), plus room for the titles
    size = ((right - left) * ncols, (top - bottom + 0.35) * nrows + 0.4)
    fig, axes = new_figure(nrows, ncols, size=size)
    flat = list(axes.ravel())
    for ax, cell in zip(flat, cells):
        plot_cell(ax, cell)
    for ax in flat[len(cells) :]:
        ax.set_visible(False)
    fig.suptitle(title or f"genotype of {genotype.space} ({genotype.space_hash[:12]})", fontsize=10)
    return fig
