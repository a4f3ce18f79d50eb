"""Networks: genotype round trip, baselines, model.json, patch checks, encoder names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import searchspaces
from decathlon.plan import ChannelNorm, Plan
from nasmed.errors import ConfigError, GenotypeError
from nasmed.genotype import Genotype
from nasmed.models.baselines import dynunet_topology, encoder_parameter_names, unet_levels
from nasmed.models.factory import build_model, check_patch, load_arch
from nasmed.models.spec import ModelSpec
from nasmed.supernet import sample_genotype
from searchspaces import SpaceError


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(scope="module")
def genotype_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("geno") / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 3).save(path)
    return path


def test_genotype_round_trip_builds_the_same_network(genotype_file: Path) -> None:
    genotype = Genotype.load(genotype_file)
    again = Genotype.from_json(genotype.to_json())
    assert again == genotype
    torch.manual_seed(0)
    a = build_model(genotype, 2, 3, width=1.0)
    torch.manual_seed(0)
    b = build_model(genotype_file, 2, 3)
    c = build_model(genotype_file.parent, 2, 3)  # a search's run folder
    assert _params(a) == _params(b) == _params(c) > 0
    assert list(a.state_dict()) == list(b.state_dict())
    x = torch.randn(1, 2, 16, 16, 16)
    a.eval()
    b.eval()
    assert a(x).shape == b(x).shape == (1, 3, 16, 16, 16)
    assert torch.equal(a(x), b(x))  # same seed, same architecture: same function
    wide = build_model(genotype, 2, 3, width=2.0)
    assert _params(wide) > 2 * _params(a)


def test_changed_or_foreign_genotype_is_refused(genotype_file: Path, tmp_path: Path) -> None:
    data = json.loads(genotype_file.read_text())
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({**data, "space_hash": "0" * 64}))
    with pytest.raises(GenotypeError, match="changed since the genotype was made"):
        build_model(changed, 1, 2)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({**data, "space": "no-such-space"}))
    with pytest.raises(SpaceError, match="unknown search space"):
        build_model(foreign, 1, 2)
    with pytest.raises(GenotypeError, match="neither unet nor dynunet"):
        load_arch(tmp_path / "missing.json")


@pytest.mark.parametrize("arch", ["unet", "dynunet"])
def test_baselines_map_patches_to_logits(arch: str) -> None:
    net = build_model(arch, 2, 3, width=0.25, patch=(32, 32, 16), spacing=(1.0, 1.0, 2.5))
    net.eval()
    assert net(torch.randn(1, 2, 32, 32, 16)).shape == (1, 3, 32, 32, 16)


def test_deep_supervision_outputs() -> None:
    net = build_model("dynunet", 1, 2, width=0.25, deep_supervision=True, patch=(32, 32, 32))
    net.train()
    out = net(torch.randn(2, 1, 32, 32, 32))
    assert isinstance(out, tuple) and len(out) >= 2
    assert all(o.shape == (2, 2, 32, 32, 32) for o in out)
    net.eval()
    assert isinstance(net(torch.randn(1, 1, 32, 32, 32)), torch.Tensor)
    with pytest.raises(ConfigError, match="no deep supervision"):
        build_model("unet", 1, 2, deep_supervision=True)


def test_dynunet_topology_follows_spacing() -> None:
    kernels, strides = dynunet_topology((64, 64, 16), (0.8, 0.8, 3.0))
    assert strides[0] == [1, 1, 1]
    assert strides[1] == [2, 2, 1] and kernels[0] == [3, 3, 1]  # the thick axis waits
    assert any(s[2] == 2 for s in strides)  # until its spacing caught up
    assert len(strides) <= 6 and kernels[-1] == [3, 3, 3]
    assert [unet_levels((s, s, s)) for s in (16, 32, 64, 256)] == [2, 3, 4, 4]


def test_dynunet_topology_is_nnunet_size_at_the_benchmark_patch() -> None:
    # the vs_nnunet benchmark's patch: nnU-Net v2 plans 4 stages of 32-256 filters, 5.5 M
    kernels, strides = dynunet_topology((48, 48, 32), (0.87, 0.87, 2.45))
    assert strides == [[1, 1, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]]
    assert kernels == [[3, 3, 1], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    net = build_model("dynunet", 1, 3, patch=(48, 48, 32), spacing=(0.87, 0.87, 2.45))
    assert [int(f) for f in net.filters] == [32, 64, 128, 256]
    assert 5.4e6 < sum(p.numel() for p in net.parameters()) < 5.7e6
    # a lone axis pools only while it keeps 3x the minimum edge (12): 8 stops, 12 goes on
    assert dynunet_topology((8, 8, 16), (1.0, 1.0, 1.0))[1] == [[1, 1, 1], [2, 2, 2]]
    assert dynunet_topology((8, 8, 24), (1.0, 1.0, 1.0))[1] == [[1, 1, 1], [2, 2, 2], [1, 1, 2]]


def test_dynunet_topology_errors_name_a_patch_that_fits() -> None:
    with pytest.raises(ConfigError, match=r"not divisible by its 8-fold pooling.*\[32, 48, 32\]"):
        dynunet_topology((36, 48, 32), (1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="too small to pool"):
        dynunet_topology((7, 7, 7), (1.0, 1.0, 1.0))


_PAIRS = [
    ((48, 48, 32), (0.87, 0.87, 2.45)),
    ((64, 64, 16), (0.8, 0.8, 3.0)),
    ((128, 128, 128), (1.0, 1.0, 1.0)),
    ((160, 192, 64), (0.7, 0.7, 2.5)),
    ((80, 112, 112), (1.9, 1.4, 1.4)),
    ((256, 256, 24), (0.5, 0.5, 5.0)),
    ((40, 40, 32), (1.0, 1.0, 1.0)),
    ((96, 96, 96), (3.0, 1.0, 1.0)),
]


@pytest.mark.parametrize(("patch", "spacing"), _PAIRS)
def test_dynunet_topology_equals_nnunet_planner(
    patch: tuple[int, int, int], spacing: tuple[float, float, float]
) -> None:
    topology = pytest.importorskip(
        "nnunetv2.experiment_planning.experiment_planners.network_topology"
    )
    _, pools, convs, padded, _ = topology.get_pool_and_conv_props(spacing, patch, 4, 999999)
    assert tuple(padded) == patch  # the pairs are patches nnU-Net would not pad
    kernels, strides = dynunet_topology(patch, spacing)
    assert strides == [list(p) for p in pools]
    assert kernels == [list(c) for c in convs]


def test_check_patch_names_the_nearest_fit(genotype_file: Path) -> None:
    assert check_patch("unet", (32, 16, 48)) == (32, 16, 48)
    with pytest.raises(ConfigError, match=r"nearest valid patch: \[32, 16, 16\]"):
        check_patch("unet", (40, 16, 20))
    genotype = Genotype.load(genotype_file)
    assert check_patch(genotype, (8, 16, 24)) == (8, 16, 24)  # scnas-small: multiples of 8
    with pytest.raises(ConfigError, match="multiple of 8"):
        check_patch(genotype, (12, 16, 16))


def _plan() -> Plan:
    return Plan(
        task_name="T",
        modalities=("CT",),
        labels={0: "background", 1: "organ"},
        target_spacing=(1.0, 1.0, 2.0),
        normalization=(ChannelNorm("ct", -100.0, 200.0, 50.0, 30.0),),
        patch_size=(32, 32, 16),
        batch_size=2,
        median_shape_after_resampling=(40, 40, 20),
    )


@pytest.mark.parametrize("arch", ["unet", "dynunet", "genotype"])
def test_model_spec_round_trip(arch: str, genotype_file: Path, tmp_path: Path) -> None:
    genotype = Genotype.load(genotype_file) if arch == "genotype" else None
    spec = ModelSpec(
        arch=arch,
        in_channels=1,
        out_channels=2,
        patch=(32, 32, 16),
        plan=_plan(),
        genotype=genotype,
        width=0.5,
        info={"epochs": 1},
    )
    spec.save(tmp_path / "model.json")
    again = ModelSpec.load(tmp_path)
    assert again == spec and again.plan == _plan() and again.load_plan() == _plan()
    assert again.genotype == genotype
    # on disk: the plain-JSON forms, as before the records were typed
    disk = json.loads((tmp_path / "model.json").read_text())
    assert disk["plan"] == _plan().to_json() and disk == again.to_json()
    assert disk["genotype"] == (genotype.to_dict() if genotype is not None else None)
    a, b = spec.build(), again.build()
    assert _params(a) == _params(b)
    b.load_state_dict(a.state_dict())  # strict: same names and shapes
    (tmp_path / "model.json").write_text('{"version": 1, "arch": "resnet"}')
    with pytest.raises(ConfigError, match="not a valid model file"):
        ModelSpec.load(tmp_path)
    if genotype is not None:  # a damaged genotype is refused when the file is read
        bad = {**disk, "genotype": {**disk["genotype"], "cells": {}}}
        (tmp_path / "model.json").write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=r"model\.json: not a valid model file .*genotype"):
            ModelSpec.load(tmp_path)


def test_spec_fields_are_typed_records() -> None:
    with pytest.raises(TypeError, match="must be a Plan"):
        ModelSpec("unet", 1, 2, (16, 16, 16), plan=_plan().to_json())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="arch 'genotype'"):
        ModelSpec("genotype", 1, 2, (16, 16, 16), plan=_plan())


@pytest.mark.parametrize("arch", ["unet", "dynunet", "genotype"])
def test_encoder_names_are_the_contracting_path(arch: str, genotype_file: Path) -> None:
    net = build_model(genotype_file if arch == "genotype" else arch, 1, 2, patch=(32, 32, 32))
    names = [n for n, _ in net.named_parameters()]
    encoder = encoder_parameter_names(net)
    assert 0 < len(encoder) < len(names)
    assert set(encoder) <= set(names)
    head = {
        "unet": names[-1],
        "dynunet": "output_block.conv.conv.weight",
        "genotype": "net.head.conv.weight",
    }
    assert head[arch] not in encoder


def test_encoder_names_include_the_fixed_top_level(tmp_path: Path) -> None:
    import searchspaces
    from nasmed.supernet import sample_genotype

    space = searchspaces.load("scnas")
    assert space.fixed_levels >= 1  # the default has a fixed level-0 block on each side
    path = tmp_path / "g.json"
    sample_genotype(space, 0).save(path)
    net = build_model(path, 1, 2, patch=(32, 32, 32))
    encoder = set(encoder_parameter_names(net))
    top = [n for n, _ in net.named_parameters() if n.startswith("net.top_")]
    assert top  # both fixed sides hold parameters
    assert {n for n in top if n.startswith("net.top_enc.")} <= encoder
    assert not {n for n in top if n.startswith(("net.top_dec.", "net.top_up."))} & encoder
