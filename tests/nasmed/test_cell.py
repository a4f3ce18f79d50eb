"""The cell DAG: only the planned terms run; entry blocks resize; zero-only nodes."""

from __future__ import annotations

import pytest
import torch

from nasmed.supernet.cell import Cell, Term
from searchspaces import CellOutput, CellType, Upsample

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


def _encoder(output: CellOutput, preact: bool, edges: object = None) -> Cell:
    ops = edges or {(j, i): ("conv3", "identity", "zero") for i in range(1, 3) for j in range(i)}
    return Cell(CellType.ENCODER, 3, 3, ops, 2, spatial_dims=3, output=output, preact=preact)  # type: ignore[arg-type]


@pytest.mark.parametrize("preact", [False, True])
def test_residual_and_sum_outputs_pass_node_0(preact: bool) -> None:
    x = torch.randn(1, 3, 4, 4, 4)
    zero = ((Term(0, "zero"),), (Term(0, "zero"), Term(1, "zero")))
    for output in (CellOutput.RESIDUAL, CellOutput.SUM):
        # every node zero: the output is node 0, the cell's input (the projection of zeros is 0)
        assert torch.allclose(_encoder(output, preact)(x, zero), x, atol=1e-6)
    concat = _encoder(CellOutput.CONCAT, preact)
    assert not torch.allclose(concat(x, zero), x)
    # sum: node 1 = identity(node 0), node 2 = identity(node 0) + identity(node 1)
    ident = ((Term(0, "identity"),), (Term(0, "identity"), Term(1, "identity")))
    assert torch.allclose(_encoder(CellOutput.SUM, preact)(x, ident), 4 * x)


def test_preact_shares_one_norm_per_source_and_ops_are_bare() -> None:
    cell = _encoder(CellOutput.RESIDUAL, True)
    assert sorted(cell.pre) == ["0", "1"]  # sources with a conv edge
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in cell.edges.modules())
    assert cell.project is not None and not any(
        isinstance(m, torch.nn.InstanceNorm3d) for m in cell.project.modules()
    )
    seen: list[torch.Tensor] = []
    cell.op(0, 1, "conv3").register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
    cell.op(0, 2, "conv3").register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
    x = torch.randn(1, 3, 4, 4, 4)
    cell(x, ((Term(0, "conv3"),), (Term(0, "conv3"), Term(1, "identity"))))
    assert len(seen) == 2 and seen[0] is seen[1]  # normalised once, shared
    assert torch.allclose(seen[0], cell.pre["0"](x))
    only_identity = _encoder(
        CellOutput.RESIDUAL, True, {(0, 1): ("identity",), (0, 2): ("zero",), (1, 2): ("identity",)}
    )
    assert len(only_identity.pre) == 0


def test_post_activation_cell_keeps_normed_ops() -> None:
    cell = _encoder(CellOutput.CONCAT, False)
    assert len(cell.pre) == 0
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in cell.op(0, 1, "conv3").modules())
