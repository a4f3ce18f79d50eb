"""to_sequential: layer order, skip wiring, and the same function as the network."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from monai.networks.layers import SkipConnection
from torch import nn

import searchspaces
from nasmed.errors import ConfigError
from nasmed.models.baselines import make_dynunet
from nasmed.pipeline.sequential import Merge, Stash, to_sequential
from searchspaces import CellType

from .conftest import PATCH


def _names(seq: nn.Sequential) -> list[str]:
    return [name.split("_", 1)[1] for name, _ in seq.named_children()]


def _links(seq: nn.Sequential) -> list[tuple[str, str]]:
    """(stash layer, merge layer) pairs sharing a namespace, in stash order."""
    stashes = [(n, m) for n, m in seq.named_children() if isinstance(m, Stash)]
    merges = [(n, m) for n, m in seq.named_children() if isinstance(m, Merge)]
    pairs = []
    for sn, s in stashes:
        match = [mn for mn, m in merges if m.namespaces["skip"] is s.namespaces["skip"]]
        assert len(match) == 1, f"{sn} is popped {len(match)} times"
        pairs.append((sn.split("_", 1)[1], match[0].split("_", 1)[1]))
    return pairs


def test_derived_layer_order_and_skips(make_net: Callable[[str], nn.Module]) -> None:
    seq = to_sequential(make_net("derived"))
    space = searchspaces.load("scnas-small")
    expected = ["stem", "stash_full", "down"]
    for layer in space.layers():
        if layer.cell_type is CellType.REDUCTION:
            expected.append(f"stash_l{layer.level - 1}")
        expected.append(layer.name)
        if layer.cell_type is CellType.EXPANSION:
            expected.append(f"merge_l{layer.level}")
    expected += ["up", "merge_full", "head"]
    assert _names(seq) == expected
    names = _names(seq)
    links = _links(seq)
    assert sorted(links) == sorted(
        [("stash_full", "merge_full"), ("stash_l0", "merge_l0"), ("stash_l1", "merge_l1")]
    )
    for stash_name, merge_name in links:  # every skip is popped after it is stashed
        assert names.index(stash_name) < names.index(merge_name)
    # each stash sits right before the reduction cell of the next level
    assert names[names.index("stash_l0") + 1] == "reduction_l1"


def test_unet_skip_connections_become_stash_and_merge(make_net: Callable[[str], nn.Module]) -> None:
    unet = make_net("unet")
    seq = to_sequential(unet)
    skips = [m for m in unet.modules() if isinstance(m, SkipConnection)]
    assert len(skips) == 2  # 16^3: two levels
    assert _names(seq) == [
        "model_0",
        "model_1_stash",
        "model_1_sub_0",
        "model_1_sub_1_stash",
        "model_1_sub_1_sub",
        "model_1_sub_1_merge",
        "model_1_sub_2_0",
        "model_1_sub_2_1",
        "model_1_merge",
        "model_2_0",
        "model_2_1",
    ]
    # nested links: the outer skip encloses the inner one
    assert _links(seq) == [
        ("model_1_stash", "model_1_merge"),
        ("model_1_sub_1_stash", "model_1_sub_1_merge"),
    ]
    # the layers are the network's own modules (shared parameters)
    assert {id(p) for p in seq.parameters()} == {id(p) for p in unet.parameters()}


@pytest.mark.parametrize("kind", ["derived", "derived_ds", "unet"])
@pytest.mark.parametrize("training", [True, False])
def test_sequence_computes_the_network(
    make_net: Callable[[str], nn.Module], kind: str, training: bool
) -> None:
    net = make_net(kind)
    seq = to_sequential(net)
    net.train(training)
    seq.train(training)
    x = torch.randn(2, 1, *PATCH)
    with torch.no_grad():
        expected, got = net(x), seq(x)
    if kind == "derived_ds" and training:
        assert isinstance(got, tuple) and len(got) == len(expected) == 3  # full, levels 0, 1
        for a, b in zip(expected, got):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
    else:
        assert isinstance(got, torch.Tensor)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["cat", "add", "mul"])
def test_plain_sequential_with_skip_modes(mode: str) -> None:
    inner = nn.Conv3d(3, 3, 3, padding=1)
    net = nn.Sequential(
        nn.Conv3d(1, 3, 3, padding=1),
        SkipConnection(nn.Sequential(inner, nn.ReLU()), mode=mode),
        nn.Conv3d(6 if mode == "cat" else 3, 2, 1),
    )
    seq = to_sequential(net)
    assert len(seq) == 6
    x = torch.randn(2, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(seq(x), net(x), rtol=0, atol=0)


def test_dynunet_is_refused() -> None:
    net = make_dynunet(1, 2, patch=(32, 32, 32), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="dynunet cannot be pipelined"):
        to_sequential(net)


@pytest.mark.parametrize(
    "options",
    [
        {"skip": searchspaces.Skip.CONCAT},
        {"stem_blocks": 0},
        {"stem_blocks": 0, "skip": "concat"},
        {"stem_blocks": 0, "fixed_levels": 1},
        {"fixed_levels": 1, "skip": "concat"},
    ],
    ids=lambda o: "-".join(f"{k}={getattr(v, 'value', v)}" for k, v in o.items()),
)
def test_derived_options_pipeline_to_the_same_function(options: dict[str, object]) -> None:
    """skip concat pipelines as concatenations; stem_blocks 0 has no full-resolution link;
    fixed_levels' blocks pipeline with their skip links and deep-supervision heads."""
    import dataclasses

    from nasmed.models.derived import DerivedNet
    from nasmed.supernet import sample_genotype

    changes = {k: searchspaces.Skip(v) if k == "skip" else v for k, v in options.items()}
    space = dataclasses.replace(searchspaces.load("scnas-small"), **changes)  # type: ignore[arg-type]
    net = DerivedNet(sample_genotype(space, 3), space, 1, 2, deep_supervision=True)
    seq = to_sequential(net)
    names = [n for n, _ in _links(seq)]
    assert ("stash_full" in names) == (space.stem_blocks != 0)
    merges = [m for m in seq.children() if isinstance(m, Merge)]
    level_modes = {m.module.mode.value for m in merges[: space.levels]}
    assert level_modes == {"cat" if space.skip is searchspaces.Skip.CONCAT else "add"}
    tops = [n.split("_", 1)[1] for n, _ in seq.named_children() if "_top_" in n]
    assert tops == (["top_enc_l0", "top_up_l0", "top_dec_l0"] if space.fixed_levels else [])
    x = torch.randn(2, 1, *PATCH)
    for training in (True, False):
        net.train(training), seq.train(training)
        with torch.no_grad():
            expected, got = net(x), seq(x)
        for a, b in zip(expected if training else [expected], got if training else [got]):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
