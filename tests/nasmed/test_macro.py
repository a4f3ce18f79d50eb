"""Macro choices: per-level per-axis strides and per-level widths (schema, supernet, genotype,
derived network, cost, decode, planted search)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import searchspaces
from nasmed.errors import GenotypeError
from nasmed.genotype import Genotype, check_space
from nasmed.models.derived import DerivedNet
from nasmed.search.decode import decode
from nasmed.search.planted_macro import (
    PLANTED_STRIDE,
    PLANTED_WIDTH,
    planted_macro_config,
    search_planted_macro,
)
from nasmed.supernet import (
    Supernet,
    architecture_cost,
    expected_cost,
    genotype_plans,
    sample_genotype,
)
from nasmed.supernet.macro import MACRO_KEY, level_channels
from nasmed.supernet.plans import fixed_plan, sample_choice
from searchspaces import SearchSpace, SpaceError

STRIDES = [[2, 2, 2], [2, 2, 1], [1, 2, 2]]
WIDTHS = [0.5, 1.0, 1.5]


def macro_space(**changes: Any) -> SearchSpace:
    data: dict[str, Any] = {
        "name": "macro",
        "levels": 2,
        "base_channels": 4,
        "nodes": 2,
        "inputs_per_node": 1,
        "ops": ["conv3", "p3d133", "dw3", "identity"],
        "stride_options": STRIDES,
        "width_options": WIDTHS,
    }
    data.update(changes)
    return SearchSpace.from_dict(data)


# -- schema -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stride_options": [[2, 2, 3]]}, "entry [2, 2, 3] must list 2 or 3 per-axis strides"),
        ({"stride_options": [[1, 1, 1]]}, "at least one 2"),
        ({"stride_options": [[2, True, 1]]}, "entry [2, True, 1]"),
        ({"stride_options": [[2, 2], [2, 2, 2]]}, "mix 2D and 3D strides"),
        ({"stride_options": [[2, 2, 1], [2, 2, 1]]}, "lists a stride twice"),
        ({"stride_options": "2,2,1"}, "'stride_options' must be a list of lists"),
        ({"width_options": [0.0, 1.0]}, "'width_options' must be multipliers in (0, 4]"),
        ({"width_options": "1.0"}, "'width_options' must be a list"),
        ({"width_options": [1.0, 1.1]}, "give level 0 the same channels twice"),
    ],
)
def test_bad_macro_keys_are_one_clear_line(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    data = {"name": "bad", "levels": 2, "base_channels": 4, **changes}
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    with pytest.raises(SpaceError) as info:
        searchspaces.load(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text and message in text


def test_macro_keys_keep_old_hashes_and_count_in_the_size() -> None:
    plain = macro_space(stride_options=[], width_options=[])
    same = SearchSpace.from_dict(
        {k: v for k, v in plain.to_dict().items() if k not in ("stride_options", "width_options")}
    )
    assert plain.content_hash() == same.content_hash()
    space = macro_space()
    assert space.content_hash() != plain.content_hash()
    assert space.size() == plain.size() * 3**2 * 3**3
    assert space.distinct_size() == plain.distinct_size() * 3**5
    assert space.axis_divisors() == (4, 4, 4)
    assert macro_space(stride_options=[[2, 2, 1], [1, 2, 1]]).axis_divisors() == (4, 4, 1)
    with pytest.raises(SpaceError, match=r"sides must be divisible by \[4, 4, 1\]"):
        macro_space(stride_options=[[2, 2, 1], [1, 2, 1]]).check_patch((8, 6, 3))
    assert macro_space(stride_options=[[2, 2, 1]]).check_patch((8, 8, 3)) == (8, 8, 3)


def test_shipped_macro_space_is_scnas_plus_macro_choices() -> None:
    # the previous default: macro choices need every level searched (no fixed_levels)
    macro, base = searchspaces.load("scnas-macro"), searchspaces.load("scnas-v3")
    assert macro.stride_options and macro.width_options
    assert not base.has_macro
    assert macro.distinct_size() == base.distinct_size() * macro.macro_size()


# -- supernet -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"stem_stride": 2},
        {"skip": "concat", "cell_output": "residual", "upsample": "trilinear"},
        {"preact": True, "stem_blocks": 2},
        {"norm": "batch"},
    ],
)
def test_sampled_forward_backward_reaches_the_macro_logits(changes: dict[str, Any]) -> None:
    torch.manual_seed(0)
    space = macro_space(**changes)
    net = Supernet(space, 1, 3)
    x = torch.randn(2, 1, 16, 16, 8)
    grads = {name: torch.zeros_like(p) for name, p in net.macro_logits().items()}
    for seed in range(6):
        y = net(x, generator=torch.Generator().manual_seed(seed))
        assert y.shape == (2, 3, 16, 16, 8)
        y.square().mean().backward()
        for name, p in net.macro_logits().items():
            assert p.grad is not None and torch.isfinite(p.grad).all()
            grads[name] += p.grad.abs()
        net.zero_grad()
    assert set(grads) == {"stride_l1", "stride_l2", "width_l0", "width_l1", "width_l2"}
    assert all(float(g.sum()) > 0 for g in grads.values())
    assert {id(p) for p in net.macro_logits().values()} <= {id(p) for p in net.arch_parameters()}


def _cell_outputs(net: torch.nn.Module, names: list[str]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name in names:
        cell = net.get_submodule(name)
        cell.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
    return shapes


def test_a_sampled_child_runs_its_strides_and_widths() -> None:
    space = macro_space()
    net = Supernet(space, 1, 2)
    names = [f"net.cells.{layer.name}" for layer in space.layers()]
    shapes = _cell_outputs(net, names)
    x = torch.randn(1, 1, 16, 16, 8)
    for seed in range(4):
        net(x, generator=torch.Generator().manual_seed(seed))
        g = net.sampled_genotype()
        assert g.strides is not None and g.widths is not None
        check_space(g, space)
        chans = level_channels(space, g.widths)
        for layer in space.layers():
            size = [16, 16, 8]
            for s in g.strides[: layer.level]:
                size = [n // a for n, a in zip(size, s)]
            assert shapes[f"net.cells.{layer.name}"] == (chans[layer.level], *size)


def _sliced_weights(supernet: Supernet, child: DerivedNet, nodes: int) -> None:
    """Copy into ``child`` the first channels (per concatenated node for a projection's input,
    the first tap along an axis a transposed kernel does not upsample) of the supernet's."""
    big = supernet.state_dict()
    with torch.no_grad():
        for name, small in child.state_dict().items():
            full = big[name]
            index: list[Any] = []
            for d, (n_small, n_full) in enumerate(zip(small.shape, full.shape)):
                if ".project." in name and d == 1 and n_small != n_full:
                    seg, c = n_full // nodes, n_small // nodes
                    index.append([k * seg + j for k in range(nodes) for j in range(c)])
                else:
                    index.append(list(range(n_small)))
            value = full
            for d, rows in enumerate(index):
                value = value.index_select(d, torch.tensor(rows, dtype=torch.long))
            small.copy_(value)


@pytest.mark.parametrize("upsample", ["transposed", "trilinear"])
def test_a_sampled_child_is_its_derived_network_with_sliced_weights(upsample: str) -> None:
    torch.manual_seed(0)
    space = macro_space(upsample=upsample, nodes=3, inputs_per_node=2)
    supernet = Supernet(space, 1, 2)
    for p in supernet.net.parameters():  # non-trivial norms too
        p.data.normal_(0, 0.5)
    g = _genotype(space, strides=((2, 2, 1), (1, 2, 2)), widths=(0.5, 1.5, 1.0))
    child = DerivedNet(g, space, 1, 2)
    _sliced_weights(supernet, child, space.nodes)
    x = torch.randn(2, 1, 16, 16, 8)
    expected = child(x)
    got = supernet(x, plans=genotype_plans(g))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# -- derived network ----------------------------------------------------------------------------


def _genotype(space: SearchSpace, **macro: Any) -> Genotype:
    g = sample_genotype(space, 0)
    return Genotype(g.space, g.space_hash, g.cells, **macro)


def test_derived_network_builds_exactly_the_chosen_strides_and_widths() -> None:
    space = macro_space()
    g = _genotype(space, strides=((2, 2, 1), (2, 2, 1)), widths=(1.5, 0.5, 1.0))
    net = DerivedNet(g, space, 1, 2)
    shapes = _cell_outputs(net, [f"net.cells.{layer.name}" for layer in space.layers()])
    y = net(torch.randn(1, 1, 16, 12, 5))  # the last axis is never halved: any length
    assert y.shape == (1, 2, 16, 12, 5)
    assert shapes["net.cells.encoder_l2_c0"] == (16, 4, 3, 5)  # 1.0 x 16 channels
    assert shapes["net.cells.encoder_l1_c0"] == (4, 8, 6, 5)  # 0.5 x 8
    assert shapes["net.cells.decoder_l0_c0"] == (6, 16, 12, 5)  # 1.5 x 4
    declared = architecture_cost(g, space, 1, 2, (16, 16, 4)).params
    assert declared == sum(p.numel() for p in net.parameters())


def test_derived_network_with_anisotropic_transposed_and_trilinear_upsampling() -> None:
    for upsample in ("transposed", "trilinear"):
        space = macro_space(upsample=upsample, stem_stride=2)
        g = _genotype(space, strides=((1, 2, 2), (2, 2, 2)), widths=(1.0, 1.0, 1.5))
        net = DerivedNet(g, space, 2, 3)
        assert net(torch.randn(2, 2, 8, 16, 16)).shape == (2, 3, 8, 16, 16)
        declared = architecture_cost(g, space, 2, 3, (8, 16, 16)).params
        assert declared == sum(p.numel() for p in net.parameters())


# -- genotype -----------------------------------------------------------------------------------


def test_genotype_round_trip_with_macro_choices(tmp_path: Path) -> None:
    space = macro_space()
    g = sample_genotype(space, 3)
    assert g.strides is not None and g.widths is not None
    path = tmp_path / "genotype.json"
    g.save(path)
    back = Genotype.load(path)
    assert back == g and back.strides == g.strides and back.widths == g.widths
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["macro"] == {"strides": [list(s) for s in g.strides], "widths": list(g.widths)}
    text = g.to_text(space)
    assert "strides per level 1..: " + "x".join(map(str, g.strides[0])) in text


def test_old_genotypes_load_with_the_plans_defaults() -> None:
    space = searchspaces.load("scnas-small")
    data = sample_genotype(space, 0).to_dict()
    assert "macro" not in data  # a space without macro choices writes none
    g = Genotype.from_dict(data)
    assert g.strides is None and g.widths is None
    assert g.level_strides(space) == ((2, 2, 2), (2, 2, 2))
    assert g.level_widths(space) == (1.0, 1.0, 1.0)
    assert DerivedNet(g, space, 1, 2)(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


@pytest.mark.parametrize(
    ("macro", "message"),
    [
        ({"strides": [[2, 1, 1], [2, 2, 2]]}, "level 1 stride [2, 1, 1] is not a choice"),
        ({"strides": [[2, 2, 2]]}, "strides for 1 levels; space 'macro' has 2"),
        ({"widths": [1.0, 2.0, 1.0]}, "level 1 width 2 is not a choice of space 'macro'"),
        ({"widths": [1.0]}, "widths for 1 levels"),
    ],
)
def test_check_space_refuses_a_macro_choice_outside_the_space(
    macro: dict[str, Any], message: str
) -> None:
    space = macro_space()
    data = sample_genotype(space, 0).to_dict()
    data["macro"] = macro
    g = Genotype.from_dict(data, source="g.json")
    with pytest.raises(GenotypeError) as info:
        check_space(g, space)
    assert "\n" not in str(info.value) and str(info.value).startswith("g.json: ")
    assert message in str(info.value)


def test_check_space_refuses_macro_choices_in_a_space_without_them() -> None:
    space = searchspaces.load("scnas-small")
    data = sample_genotype(space, 0).to_dict()
    data["macro"] = {"strides": [[2, 2, 1], [2, 2, 2]], "widths": [0.5, 1, 1]}
    with pytest.raises(GenotypeError, match=r"level 1 stride \[2, 2, 1\] is not a choice"):
        check_space(Genotype.from_dict(data), space)
    data["macro"] = {"widths": [0.5, 1, 1]}
    with pytest.raises(GenotypeError, match=r"level 0 width 0\.5 is not a choice"):
        check_space(Genotype.from_dict(data), space)


def test_malformed_macro_is_a_genotype_error() -> None:
    data = sample_genotype(macro_space(), 0).to_dict()
    for bad in ({"strides": "2,2,1"}, {"widths": [-1]}, {"depth": 3}, [1]):
        data["macro"] = bad
        with pytest.raises(GenotypeError, match="malformed genotype"):
            Genotype.from_dict(data)


def test_to_text_follows_the_cell_output() -> None:
    residual = searchspaces.load("scnas")
    text = sample_genotype(residual, 0).to_text()
    assert "output = 1x1x1 conv block(concat(node 1..4)) + input" in text
    plain = searchspaces.load("scnas-v1")
    assert "output = 1x1x1 conv block(concat(node 1..4))\n" in sample_genotype(plain, 0).to_text()
    summed = macro_space(cell_output="sum")
    assert "output = input + sum(node 1..2)" in sample_genotype(summed, 0).to_text(summed)


# -- decode, cost, estimators -------------------------------------------------------------------


def test_decode_takes_the_argmax_macro_choice() -> None:
    space = macro_space()
    net = Supernet(space, 1, 2)
    logits = net.arch_logits()
    logits[MACRO_KEY]["stride_l1"] = np.array([0.0, 0.0, 2.0])
    logits[MACRO_KEY]["stride_l2"] = np.array([0.0, 1.0, 0.5])
    logits[MACRO_KEY]["width_l0"] = np.array([0.0, 0.0, 3.0])
    logits[MACRO_KEY]["width_l2"] = np.array([0.0, 1.0, 0.0])
    g = decode(logits, space)
    assert g.strides == ((1, 2, 2), (2, 2, 1))
    assert g.widths == (1.5, 0.5, 1.0)  # ties: the first option
    del logits[MACRO_KEY]
    with pytest.raises(ValueError, match="lack the macro choices"):
        decode(logits, space)


def test_expected_cost_is_exact_over_the_macro_choices() -> None:
    # one cell structure only (one op, one input): the expectation is over the macro choices
    space = macro_space(ops=["conv3"], upsample="trilinear", stride_options=STRIDES[:2])
    net = Supernet(space, 1, 2)
    g = decode(net.arch_logits(), space)
    patch = (16, 16, 8)
    macro = {k: torch.randn(v.shape[0]) for k, v in net.macro_logits().items()}
    exact = {"params": 0.0, "flops": 0.0, "act_bytes": 0.0}
    for s1, s2 in itertools.product(range(2), repeat=2):
        for w in itertools.product(range(3), repeat=3):
            p = float(
                torch.softmax(macro["stride_l1"], 0)[s1] * torch.softmax(macro["stride_l2"], 0)[s2]
            )
            for level, j in enumerate(w):
                p *= float(torch.softmax(macro[f"width_l{level}"], 0)[j])
            child = Genotype(
                g.space,
                g.space_hash,
                g.cells,
                strides=(space.stride_options[s1], space.stride_options[s2]),
                widths=tuple(WIDTHS[j] for j in w),
            )
            cost = architecture_cost(child, space, 1, 2, patch)
            exact["params"] += p * cost.params
            exact["flops"] += p * cost.flops
            exact["act_bytes"] += p * cost.act_bytes
    expected = expected_cost(net.logits(), space, patch, macro=macro)
    for key, value in exact.items():
        assert float(expected[key].detach()) == pytest.approx(value, rel=1e-6)
    flops = expected_cost(net.logits(), space, patch, macro=net.macro_logits())["flops"]
    flops.backward()
    grads = [p.grad for p in net.macro_logits().values()]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_latency_cost_refuses_macro_choices() -> None:
    space = macro_space()
    net = Supernet(space, 1, 2)
    costs = expected_cost(net.logits(), space, (16, 16, 8))
    with pytest.raises(ValueError, match="latency does not cover macro choices"):
        costs["latency_s"]


def test_macro_log_prob_scores_the_sample_the_child_ran_with() -> None:
    space = macro_space()
    net = Supernet(space, 1, 2)
    gen = torch.Generator().manual_seed(0)
    plans = {
        k: fixed_plan(sample_choice(d["ops"], d["inputs"], space, gen), space)
        for k, d in net.logits().items()
    }
    with torch.no_grad():
        net(torch.randn(1, 1, 16, 16, 8), plans=plans, generator=gen)
    logp = net.macro_log_prob()
    assert logp is not None
    assert float(logp.detach()) == pytest.approx(2 * np.log(1 / 3) + 3 * np.log(1 / 3), rel=1e-6)
    logp.backward()
    assert all(p.grad is not None for p in net.macro_logits().values())


def test_macro_entropy_is_a_decision_term() -> None:
    import math

    net = Supernet(macro_space(), 1, 2)
    ent = net.entropies()
    assert ent["macro"] == pytest.approx(math.log(3), rel=1e-6)  # every choice has 3 options
    assert net.max_entropies()["macro"] == pytest.approx(ent["macro"], rel=1e-6)
    h = net.entropy_terms()
    assert h.shape == (3,)
    h.sum().backward()
    with torch.no_grad():
        net.arch_macro["width_l0"].copy_(torch.tensor([5.0, 0.0, 0.0]))
    assert net.entropies()["macro"] < ent["macro"]
    assert "macro" not in Supernet(searchspaces.load("scnas-small"), 1, 2).entropies()


def test_mixed_mode_refuses_macro_choices() -> None:
    with pytest.raises(ValueError, match="only mode 'sampled' supports them"):
        Supernet(macro_space(), 1, 2, mode="mixed")


# -- planted problem ----------------------------------------------------------------------------


@pytest.mark.slow
def test_reinforce_finds_the_planted_stride() -> None:
    """Full resolution along the last axis is needed: stride (2, 2, 1) must win."""
    results = [search_planted_macro(planted_macro_config("reinforce", seed)) for seed in range(5)]
    wins = [r for r in results if r.chosen == PLANTED_STRIDE]
    assert len(wins) >= 4, [r.probabilities for r in results]
    assert all(r.probabilities[PLANTED_STRIDE] > 0.8 for r in wins)


@pytest.mark.slow
def test_reinforce_finds_the_planted_width() -> None:
    """Four independent channels must pass level 0: width 1x (8 channels) must win over 0.25x."""
    results = [
        search_planted_macro(planted_macro_config("reinforce", seed), "width") for seed in range(5)
    ]
    wins = [r for r in results if r.chosen == PLANTED_WIDTH]
    assert len(wins) >= 4, [r.probabilities for r in results]
    assert all(r.probabilities[PLANTED_WIDTH] > 0.8 for r in wins)


def test_planted_macro_problem_names_are_checked() -> None:
    with pytest.raises(ValueError, match="problem must be 'stride' or 'width'"):
        search_planted_macro(planted_macro_config(), "depth")


# -- pipeline and nnU-Net export ----------------------------------------------------------------


def test_a_macro_genotype_pipelines_to_the_same_function() -> None:
    from nasmed.pipeline.sequential import to_sequential

    space = searchspaces.load("scnas-macro")
    g = _genotype(space, strides=((2, 2, 1), (1, 2, 2), (2, 1, 2)), widths=(0.5, 1.5, 1.0, 0.5))
    net = DerivedNet(g, space, 1, 2, width=0.25, deep_supervision=True)
    seq = to_sequential(net)
    x = torch.randn(1, 1, 16, 16, 16)
    for training in (True, False):
        net.train(training)
        seq.train(training)
        with torch.no_grad():
            expected, got = net(x), seq(x)
        for a, b in zip(expected if training else (expected,), got if training else (got,)):
            torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_nnunet_export_carries_the_chosen_strides() -> None:
    from nasmed.export.nnunet_net import NasmedNnUNet, genotype_strides
    from nasmed.export.nnunet_plans import genotype_architecture

    space = searchspaces.load("scnas-macro")
    g = _genotype(space, strides=((2, 2, 1), (1, 2, 2), (2, 2, 2)), widths=(1.0, 0.5, 1.5, 1.0))
    strides = genotype_strides(g)
    assert strides == [[1, 1, 1], [2, 2, 2], [2, 2, 1], [1, 2, 2], [2, 2, 2]]
    arch = genotype_architecture(g, width=0.25)
    kwargs = {k: v for k, v in arch["arch_kwargs"].items() if k != "conv_op"}
    net = NasmedNnUNet(1, 3, **kwargs, deep_supervision=True)
    net.train()
    outputs = net(torch.randn(1, 1, 32, 32, 32))
    # nnU-Net's deep supervision scales: 1 / cumprod(strides), all stages but the lowest
    scales = 1 / np.cumprod(np.array(strides), axis=0)[:-1]
    assert [tuple(o.shape[2:]) for o in outputs] == [
        tuple(int(32 * s) for s in scale) for scale in scales
    ]
