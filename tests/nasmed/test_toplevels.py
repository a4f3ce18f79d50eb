"""Fixed top levels (``fixed_levels``): nnU-Net-like blocks instead of searched cells."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import searchspaces
from nasmed.errors import GenotypeError
from nasmed.genotype import Genotype, check_space
from nasmed.models.derived import DerivedNet, build_network
from nasmed.supernet import (
    Supernet,
    architecture_cost,
    genotype_plans,
    param_range,
    sample_genotype,
)
from nasmed.supernet.toplevels import Residual, top_level_parts
from searchspaces import SearchSpace, SpaceError

SMALL = searchspaces.load("scnas-small")


def _space(**changes: object) -> SearchSpace:
    return dataclasses.replace(SMALL, levels=3, sharing=searchspaces.Sharing.LAYER, **changes)  # type: ignore[arg-type]


def _convs(module: torch.nn.Module) -> list[tuple[int, int, tuple[int, ...], tuple[int, ...]]]:
    return [
        (m.in_channels, m.out_channels, m.kernel_size, m.stride)
        for m in module.modules()
        if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d)
    ]


@pytest.mark.parametrize("k", [1, 2])
def test_fixed_levels_have_no_cells_and_nnunet_blocks(k: int) -> None:
    space = _space(fixed_levels=k, stem_blocks=0)
    assert all(layer.level >= k for layer in space.layers())
    # level 0 loses its encoder, expansion and decoder cells; deeper levels their reduction too
    assert len(space.arch_keys()) == len(_space().arch_keys()) - 3 - 4 * (k - 1)
    net = DerivedNet(sample_genotype(space, 0), space, 1, 2).net
    ch = space.channels()
    assert (
        sorted(net.top_enc)
        == sorted(net.top_up)
        == sorted(net.top_dec)
        == [str(level) for level in range(k)]
    )
    assert _convs(net.top_enc["0"]) == [(ch[0], ch[0], (3, 3, 3), (1, 1, 1))]
    assert _convs(net.top_up["0"]) == [(ch[1], ch[0], (2, 2, 2), (2, 2, 2))]
    assert _convs(net.top_dec["0"]) == [(ch[0], ch[0], (3, 3, 3), (1, 1, 1))]
    if k == 2:  # a deeper fixed level enters with its own stride-2 block
        assert _convs(net.top_enc["1"]) == [
            (ch[0], ch[1], (3, 3, 3), (2, 2, 2)),
            (ch[1], ch[1], (3, 3, 3), (1, 1, 1)),
        ]
    assert next(iter(space.layers())).name == f"reduction_l{k}"


@pytest.mark.parametrize(
    "changes",
    [
        {"fixed_levels": 1, "stem_blocks": 0},
        {"fixed_levels": 2, "skip": searchspaces.Skip.CONCAT, "preact": True},
        {"fixed_levels": 1, "stem_stride": 1, "cell_output": searchspaces.CellOutput.RESIDUAL},
    ],
    ids=["k1-stem0", "k2-concat-preact", "k1-stride1"],
)
def test_supernet_child_is_the_derived_network_with_shared_weights(
    changes: dict[str, object],
) -> None:
    torch.manual_seed(0)
    space = _space(**changes)
    supernet = Supernet(space, 1, 2)
    for p in supernet.net.parameters():  # non-trivial norms too
        p.data.normal_(0, 0.5)
    g = sample_genotype(space, 5)
    child = DerivedNet(g, space, 1, 2)
    missing, _ = child.net.load_state_dict(supernet.net.state_dict(), strict=False)
    assert not missing
    x = torch.randn(2, 1, 32, 32, 32)
    for training in (True, False):  # instance norms: same function in both modes
        supernet.train(training), child.train(training)
        with torch.no_grad():
            got, expected = supernet(x, plans=genotype_plans(g)), child(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the deep-supervision heads of the fixed levels: full, levels 0, 1 (stride-2 stem) ...
    outs = DerivedNet(g, space, 1, 2, deep_supervision=True)(x)
    sizes = [o.shape[-1] for o in outs]
    assert sizes == ([32, 16, 8, 4] if space.stem_stride == 2 else [32, 16, 8])


def test_declared_cost_counts_the_fixed_blocks() -> None:
    space = _space(fixed_levels=1, stem_blocks=0)
    g = sample_genotype(space, 1)
    net = DerivedNet(g, space, 2, 3)
    cost = architecture_cost(g, space, 2, 3, (32, 32, 32))
    assert cost.params == sum(p.numel() for p in net.parameters())
    low, high = param_range(space, 2, 3)
    assert low <= cost.params <= high
    # the fixed blocks' FLOPs: two 3x3x3 conv blocks and a 2x2x2 transposed one at level 0
    c0, c1, voxels = space.channels()[0], space.channels()[1], 16**3
    conv = (2 * (2 * 27 * c0 * c0) + 2 * c1 * c0) * voxels  # multiply-adds as 2 FLOPs
    parts = top_level_parts(space, 3, space.channels())
    assert all(level == 0 for _, level in parts)
    assert sum(part.flops for part, _ in parts) * voxels == pytest.approx(conv, rel=0.05)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"fixed_levels": 3}, r"'fixed_levels' must be an integer in 0..levels-1 \(2\)"),
        ({"fixed_levels": -1}, "'fixed_levels' must be an integer"),
        ({"fixed_levels": True}, "'fixed_levels' must be an integer"),
        ({"fixed_levels": 1, "width_options": (0.5, 1.0)}, "cannot be combined"),
        ({"fixed_levels": 1, "stride_options": ((2, 2, 2), (2, 2, 1))}, "cannot be combined"),
    ],
)
def test_bad_fixed_levels_are_refused(changes: dict[str, object], match: str) -> None:
    with pytest.raises(SpaceError, match=match):
        _space(**changes)


def test_fixed_levels_keep_old_hashes_and_change_the_hash() -> None:
    assert _space(fixed_levels=0).content_hash() == _space().content_hash()
    assert _space(fixed_levels=1).content_hash() != _space().content_hash()


def test_a_genotype_with_level_0_cells_fails_check_space_in_one_line() -> None:
    """A genotype of the previous default (every level searched) against the new default."""
    old = sample_genotype(searchspaces.load("scnas-v3"), 0)
    new = searchspaces.load("scnas")
    assert new.fixed_levels == 1
    stale = Genotype("scnas", old.space_hash, old.cells)
    with pytest.raises(GenotypeError) as info:
        check_space(stale, new)
    assert "\n" not in str(info.value) and "changed since the genotype was made" in str(info.value)
    # even with the new hash, its level-0 cells do not fit
    forged = Genotype("scnas", new.content_hash(), old.cells)
    with pytest.raises(GenotypeError, match="do not match space cells") as info:
        check_space(forged, new)
    assert "\n" not in str(info.value)
    with pytest.raises(GenotypeError):
        build_network(forged, 1, 2)


def test_fixed_blocks_are_residual_with_a_summed_skip() -> None:
    """x + block(x) in the encoder and (summed skip) the decoder; concat: a plain block."""
    space = _space(fixed_levels=1)
    net = DerivedNet(sample_genotype(space, 0), space, 1, 2).net
    for block in (net.top_enc["0"], net.top_dec["0"]):
        assert isinstance(block, Residual)
        x = torch.randn(1, space.channels()[0], 8, 8, 8)
        torch.testing.assert_close(block(x), x + block.block(x))
    concat = _space(fixed_levels=1, skip=searchspaces.Skip.CONCAT)
    dec = DerivedNet(sample_genotype(concat, 0), concat, 1, 2).net.top_dec["0"]
    assert not isinstance(dec, Residual)
