"""Every registered candidate op: shapes in 2D and 3D, declared cost == real parameters."""

from __future__ import annotations

import pytest
import torch

import searchspaces
from nasmed.ops import create_op, list_ops, op_class, op_cost, register_op
from nasmed.ops.registry import OpCost
from searchspaces.ops import BUILTIN_OPS


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", list_ops())
@pytest.mark.parametrize(("cin", "cout"), [(6, 6), (4, 8)])
def test_op_shape_and_declared_params(name: str, spatial_dims: int, cin: int, cout: int) -> None:
    if name == "identity" and cin != cout:
        with pytest.raises(ValueError, match="in_channels == out_channels"):
            create_op(name, spatial_dims, in_channels=cin, out_channels=cout)
        return
    op = create_op(name, spatial_dims, in_channels=cin, out_channels=cout)
    x = torch.randn(2, cin, *([7] * spatial_dims))
    y = op(x)
    assert y.shape == (2, cout, *([7] * spatial_dims))
    cost = op_cost(name, spatial_dims, in_channels=cin, out_channels=cout)
    assert cost.params == sum(p.numel() for p in op.parameters())
    assert cost.flops >= 0 and cost.act_bytes >= 0
    if cost.params:
        assert cost.flops > 0 and cost.act_bytes > 0


@pytest.mark.parametrize("name", list_ops())
def test_ops_with_params_train(name: str) -> None:
    op = create_op(name, 3, in_channels=4, out_channels=4)
    x = torch.randn(1, 4, 5, 5, 5, requires_grad=True)
    (op(x).square().sum() + x.sum()).backward()
    for p in op.parameters():
        assert p.grad is not None


def test_builtin_vocabulary_matches_registry() -> None:
    assert set(BUILTIN_OPS) <= set(list_ops())
    assert op_class("zero").is_zero and not op_class("identity").is_zero


def test_pseudo_3d_kernels() -> None:
    op = create_op("p3d331", 3, in_channels=2, out_channels=2)
    kernels = [m.kernel_size for m in op.modules() if isinstance(m, torch.nn.Conv3d)]
    assert kernels == [(3, 3, 1), (1, 1, 3)]
    op = create_op("p3d133", 3, in_channels=2, out_channels=2)
    kernels = [m.kernel_size for m in op.modules() if isinstance(m, torch.nn.Conv3d)]
    assert kernels == [(1, 3, 3), (3, 1, 1)]


def test_unknown_op() -> None:
    with pytest.raises(KeyError, match=r"unknown operation 'conv9'.*conv3"):
        create_op("conv9", in_channels=1, out_channels=1)


def test_registered_op_becomes_valid_in_spaces(tmp_path: pytest.TempPathFactory) -> None:
    @register_op("test_double", "doubles its input")
    class Double(torch.nn.Module):
        is_zero = False

        def __init__(self, spatial_dims: int, cin: int, cout: int, norm: str, act: str) -> None:
            super().__init__()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

        @classmethod
        def cost(cls, spatial_dims: int, cin: int, cout: int) -> OpCost:
            return OpCost(0, float(cout), 0.0)

    space = searchspaces.SearchSpace(name="t", levels=1, base_channels=4, ops=("test_double",))
    assert space.ops == ("test_double",)
    with pytest.raises(ValueError, match="already registered"):
        register_op("test_double")(torch.nn.Identity)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", list_ops())
def test_declared_flops_match_flop_counter(name: str, spatial_dims: int) -> None:
    """Declared convolution FLOPs == torch's FlopCounterMode, bare and normed, every op."""
    from torch.utils.flop_counter import FlopCounterMode

    from nasmed.ops.blocks import ACT_FLOPS, NORM_FLOPS

    c, side = 6, 5
    voxels = side**spatial_dims
    x = torch.randn(1, c, *([side] * spatial_dims))
    for bare in (True, False):
        op = create_op(
            name,
            spatial_dims,
            in_channels=c,
            out_channels=c,
            norm=None if bare else "instance",
            act=None if bare else "leakyrelu",
        )
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            op(x)
        declared = op_cost(name, spatial_dims, in_channels=c, out_channels=c, normed=not bare)
        norms = 0 if bare or declared.params == 0 else (NORM_FLOPS + ACT_FLOPS) * c
        assert declared.flops - norms == pytest.approx(counter.get_total_flops() / voxels)
        assert declared.params == sum(p.numel() for p in op.parameters())
        if bare:  # a bare op has no norm
            assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in op.modules())


def test_rotated_p3d133_is_the_same_function() -> None:
    op = create_op("p3d133", 3, in_channels=3, out_channels=4)
    assert op.rotate
    x = torch.randn(2, 3, 5, 6, 7, requires_grad=True)
    y = op(x)
    op.rotate = False
    y_plain = op(x)
    assert torch.allclose(y, y_plain, atol=1e-5)
    (g,) = torch.autograd.grad(y.square().sum(), x)
    (g_plain,) = torch.autograd.grad(y_plain.square().sum(), x)
    assert torch.allclose(g, g_plain, atol=1e-4)


def test_raw_input_ops() -> None:
    assert op_class("identity").raw_input and op_class("zero").raw_input
    assert not op_class("conv3").raw_input and not op_class("p3d331").raw_input
