"""The cell DAG: only the planned terms run; entry blocks resize; zero-only nodes."""

from __future__ import annotations

import pytest
import torch

from nasmed.supernet.cell import Cell, Term
from searchspaces import CellType, Upsample

OPS = ("conv3", "identity", "zero", "dw3")
EDGES = {(j, i): OPS for i in range(1, 4) for j in range(i)}


def _ran(cell: Cell) -> list[str]:
    ran: list[str] = []
    for key, ops in cell.edges.items():
        for name, module in ops.items():  # type: ignore[operator]
            module.register_forward_hook(lambda *_a, k=key, n=name: ran.append(f"{k}:{n}"))
    return ran


def test_only_planned_terms_run() -> None:
    cell = Cell(CellType.ENCODER, 4, 4, EDGES, 3, spatial_dims=2)
    ran = _ran(cell)
    plan = (
        (Term(0, "conv3"),),
        (Term(0, "zero"), Term(1, "identity")),
        (Term(1, "dw3"), Term(2, "conv3")),
    )
    y = cell(torch.randn(1, 4, 8, 8), plan)
    assert y.shape == (1, 4, 8, 8)
    assert sorted(ran) == ["0_1:conv3", "1_2:identity", "1_3:dw3", "2_3:conv3"]


def test_weights_scale_terms() -> None:
    cell = Cell(CellType.ENCODER, 2, 2, {(0, 1): ("identity",)}, 1, spatial_dims=2).eval()
    x = torch.randn(1, 2, 4, 4)
    w = torch.tensor(1.0, requires_grad=True)
    y = cell(x, ((Term(0, "identity", w),),))
    assert torch.allclose(y, cell(x, ((Term(0, "identity"),),)))
    y.sum().backward()
    assert w.grad is not None


def test_zero_only_node_gives_zeros_shape() -> None:
    cell = Cell(CellType.ENCODER, 3, 3, {(0, 1): ("zero",)}, 1, spatial_dims=3)
    assert cell(torch.randn(2, 3, 4, 4, 4), ((Term(0, "zero"),),)).shape == (2, 3, 4, 4, 4)


@pytest.mark.parametrize(
    ("cell_type", "upsample", "size"),
    [
        (CellType.REDUCTION, Upsample.TRANSPOSED, 4),
        (CellType.EXPANSION, Upsample.TRANSPOSED, 16),
        (CellType.EXPANSION, Upsample.TRILINEAR, 16),
        (CellType.DECODER, Upsample.TRANSPOSED, 8),
    ],
)
def test_entry_blocks_resize(cell_type: CellType, upsample: Upsample, size: int) -> None:
    for dims in (2, 3):
        cell = Cell(cell_type, 6, 3, {(0, 1): ("conv3",)}, 1, spatial_dims=dims, upsample=upsample)
        y = cell(torch.randn(1, 6, *([8] * dims)), ((Term(0, "conv3"),),))
        assert y.shape == (1, 3, *([size] * dims))


def test_bad_plan_and_edges() -> None:
    cell = Cell(CellType.ENCODER, 2, 2, {(0, 1): ("conv3",)}, 2, spatial_dims=2)
    with pytest.raises(ValueError, match="plan has 1 nodes"):
        cell(torch.randn(1, 2, 4, 4), ((Term(0, "conv3"),),))
    with pytest.raises(ValueError, match="edge 2->1"):
        Cell(CellType.ENCODER, 2, 2, {(2, 1): ("conv3",)}, 2, spatial_dims=2)
