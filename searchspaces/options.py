"""The option sets of a search space (string enums, as written in the YAML files)."""

from __future__ import annotations

from enum import Enum

__all__ = ["CellOutput", "CellType", "Sharing", "Skip", "Upsample"]


class CellType(str, Enum):
    """The four SCNAS cell types."""

    ENCODER = "encoder"
    REDUCTION = "reduction"
    DECODER = "decoder"
    EXPANSION = "expansion"


class Sharing(str, Enum):
    """One searched structure per cell type, or one per layer."""

    CELL_TYPE = "cell_type"
    LAYER = "layer"


class Upsample(str, Enum):
    """How an expansion cell doubles the resolution before its DAG."""

    TRANSPOSED = "transposed"
    TRILINEAR = "trilinear"


class CellOutput(str, Enum):
    """How a cell combines its nodes into its output.

    ``concat``: a 1x1x1 conv block of the concatenated nodes 1..n (the SCNAS/DARTS cell).
    ``residual``: the same projection plus node 0 (the cell's input after its entry block): a
    path without any searched operation through every cell. Node 0 rather than the raw cell
    input, because for resizing cells only node 0 has the output's shape and channels.
    ``sum``: node 0 plus the sum of nodes 1..n, no projection (the cheapest; every node is
    already at the cell's channels).
    """

    CONCAT = "concat"
    RESIDUAL = "residual"
    SUM = "sum"


class Skip(str, Enum):
    """How the decoder takes the same level's encoder output.

    ``sum``: added to the expansion cell's output (SCNAS, DiNTS). ``concat``: concatenated with
    it, the next decoder cell's entry 1x1x1 conv block mixing both (nnU-Net's handling; the
    next block sees encoder and decoder features separately).
    """

    SUM = "sum"
    CONCAT = "concat"
