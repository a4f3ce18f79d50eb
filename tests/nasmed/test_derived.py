"""Derived networks: same as rebuilt from the saved genotype, costs, space checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import searchspaces
from nasmed.errors import GenotypeError
from nasmed.genotype import Genotype
from nasmed.models.derived import DerivedNet, build_network
from nasmed.supernet import Supernet, architecture_cost, param_range, sample_genotype
from nasmed.train.losses import DeepSupervisionLoss, make_seg_loss
from searchspaces import CellOutput, Skip, Upsample

SPACE = searchspaces.load("scnas-small")


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_rebuilt_from_saved_json_is_the_same(tmp_path: Path) -> None:
    g = sample_genotype(SPACE, 2)
    net = DerivedNet(g, SPACE, 1, 3)
    g.save(tmp_path / "genotype.json")
    again = build_network(Genotype.load(tmp_path / "genotype.json"), 1, 3)
    assert _count(net) == _count(again)
    again.load_state_dict(net.state_dict())  # same modules, same names
    x = torch.randn(1, 1, 32, 32, 32)
    net.eval(), again.eval()
    y = net(x)
    assert isinstance(y, torch.Tensor) and y.shape == (1, 3, 32, 32, 32)
    assert torch.equal(y, again(x))


@pytest.mark.parametrize("name", ["scnas-small", "scnas", "scnas-v4", "scnas-shared"])
def test_declared_params_match(name: str) -> None:
    space = searchspaces.load(name)
    g = sample_genotype(space, 0)
    net = DerivedNet(g, space, 2, 4)
    patch = space.default_patch or ()
    assert architecture_cost(g, space, 2, 4, patch).params == _count(net)


def test_head_kernel_3_declared_flops_match_the_counter() -> None:
    """scnas and scnas-v4 differ in the head alone (3x3x3 vs 2x2x2 transposed conv): the declared
    FLOPs differ by what the flop counter counts."""
    from torch.utils.flop_counter import FlopCounterMode

    counted, declared = [], []
    for name in ("scnas", "scnas-v4"):
        space = searchspaces.load(name)
        g = sample_genotype(space, 0)
        net = DerivedNet(g, space, 1, 3).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 3, 32, 32, 32)  # type: ignore[union-attr]
        counted.append(counter.get_total_flops())
        declared.append(architecture_cost(g, space, 1, 3, (32, 32, 32)).flops)
    assert counted[0] - counted[1] == declared[0] - declared[1] == 2 * (27 - 8) * 16 * 3 * 16**3


def test_width_and_2d() -> None:
    g = sample_genotype(SPACE, 0)
    wide = DerivedNet(g, SPACE, 1, 2, width=2.0, spatial_dims=2)
    assert architecture_cost(g, SPACE, 1, 2, (32, 32), width=2.0).params == _count(wide)
    assert wide(torch.randn(1, 1, 32, 16)).shape == (1, 2, 32, 16)  # type: ignore[union-attr]


def test_deep_supervision_outputs() -> None:
    space = searchspaces.load("scnas")
    net = DerivedNet(sample_genotype(space, 0), space, 1, 2, deep_supervision=True, spatial_dims=2)
    outs = net(torch.randn(1, 1, 64, 64))
    assert isinstance(outs, tuple)
    assert [o.shape[-1] for o in outs] == [64, 32, 16, 8]  # full, levels 0, 1, 2 (stem stride 2)
    net.eval()
    assert isinstance(net(torch.randn(1, 1, 64, 64)), torch.Tensor)


def test_supernet_weights_load_into_the_derived_net() -> None:
    supernet = Supernet(SPACE, 1, 2)
    net = DerivedNet(sample_genotype(SPACE, 1), SPACE, 1, 2)
    weights = {f"net.{k}": v for k, v in net.net.state_dict().items()}
    missing = set(weights) - set(supernet.state_dict())
    assert not missing


def test_changed_space_is_refused() -> None:
    g = sample_genotype(SPACE, 0)
    stale = Genotype(g.space, "0" * 64, g.cells)
    with pytest.raises(GenotypeError, match="changed since"):
        build_network(stale, 1, 2)
    with pytest.raises(searchspaces.SpaceError, match="unknown search space"):
        build_network(Genotype("gone", "0" * 64, g.cells), 1, 2)


OPTIONS = [
    {"cell_output": CellOutput.RESIDUAL},
    {"cell_output": CellOutput.RESIDUAL, "preact": True},
    {"cell_output": CellOutput.SUM, "preact": True, "stem_blocks": 2},
    {"cell_output": CellOutput.RESIDUAL, "preact": True, "skip": Skip.CONCAT, "stem_stride": 1},
    {"cell_output": CellOutput.CONCAT, "stem_blocks": 2, "skip": Skip.CONCAT},
    {"cell_output": CellOutput.RESIDUAL, "stem_blocks": 0},
    {"cell_output": CellOutput.RESIDUAL, "stem_blocks": 0, "preact": True},
    {"cell_output": CellOutput.RESIDUAL, "stem_blocks": 0, "fixed_levels": 1},
    {"cell_output": CellOutput.SUM, "preact": True, "skip": Skip.CONCAT, "fixed_levels": 1},
    {"cell_output": CellOutput.RESIDUAL, "levels": 3, "fixed_levels": 2, "stem_blocks": 2},
    {"stem_stride": 1, "fixed_levels": 1, "upsample": Upsample.TRILINEAR},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_cell_options_build_train_and_cost_what_they_declare(options: dict[str, object]) -> None:
    space = dataclasses.replace(SPACE, **options)  # type: ignore[arg-type]
    g = sample_genotype(space, 4)
    plain = DerivedNet(g, space, 2, 3)  # costs leave the deep-supervision heads out
    assert architecture_cost(g, space, 2, 3, (32, 32, 32)).params == _count(plain)
    low, high = param_range(space, 2, 3)
    assert low <= _count(plain) <= high
    net = DerivedNet(g, space, 2, 3, deep_supervision=True)
    outs = net(torch.randn(2, 2, 32, 32, 32))
    assert isinstance(outs, tuple) and outs[0].shape == (2, 3, 32, 32, 32)
    loss = DeepSupervisionLoss(make_seg_loss())(outs, torch.randint(0, 3, (2, 1, 32, 32, 32)))
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the supernet holds every module the derived net has (weights transfer by name)
    supernet = Supernet(space, 2, 3)
    assert set(plain.net.state_dict()) <= {k.removeprefix("net.") for k in supernet.state_dict()}


def test_stem_blocks_make_an_nnunet_first_stage() -> None:
    space = dataclasses.replace(SPACE, stem_blocks=2)
    net = DerivedNet(sample_genotype(space, 0), space, 1, 2)
    convs = [m for m in net.net.stem.modules() if isinstance(m, torch.nn.Conv3d)]
    norms = [m for m in net.net.stem.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    assert [c.kernel_size for c in convs] == [(3, 3, 3)] * 2 and len(norms) == 2
    head_convs = [m for m in net.net.head.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [c.kernel_size for c in head_convs] == [(3, 3, 3), (1, 1, 1)]


def test_stem_blocks_0_has_no_full_resolution_stage() -> None:
    space = dataclasses.replace(SPACE, stem_blocks=0)
    model = DerivedNet(sample_genotype(space, 0), space, 1, 2)
    net = model.net
    assert isinstance(net.stem, torch.nn.Identity) and net.up is None
    assert net.down is not None
    down = [m for m in net.down.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [(c.in_channels, c.stride) for c in down] == [(1, (2, 2, 2))]  # from the image
    head = [m for m in net.head.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
    expected = [(space.channels()[0], 2, (2, 2, 2))]
    assert [(c.in_channels, c.out_channels, c.stride) for c in head] == expected
    # every other convolution runs at half the resolution or lower
    x = torch.randn(1, 1, 32, 32, 32)
    sizes: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
        for m in net.modules()
        if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d)
    ]
    model.eval()(x)
    for h in hooks:
        h.remove()
    assert sizes.count(32) == 1 and max(sizes) == 32  # only the head's output
    with pytest.raises(searchspaces.SpaceError, match="needs stem_stride 2"):
        dataclasses.replace(SPACE, stem_blocks=0, stem_stride=1)


@pytest.mark.parametrize("previous", ["scnas-v1", "scnas-v2", "scnas-v3"])
def test_old_genotype_of_the_changed_default_fails_with_one_line(previous: str) -> None:
    old = sample_genotype(searchspaces.load(previous), 0)
    stale = Genotype("scnas", old.space_hash, old.cells)  # made before scnas changed
    with pytest.raises(GenotypeError) as info:
        build_network(stale, 1, 2)
    message = str(info.value)
    assert "\n" not in message and "changed since the genotype was made" in message
    assert old.space_hash[:12] in message and f"set its \"space\" to '{previous}'" in message
    # the old space is still shipped under its own name, with its old hash
    assert searchspaces.load(previous).content_hash() == old.space_hash
