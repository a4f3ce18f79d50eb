"""The supernet: only sampled ops run, gradients reach the logits, determinism, costs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import searchspaces
from nasmed.models.derived import DerivedNet
from nasmed.search.decode import decode
from nasmed.supernet import Supernet, architecture_cost, expected_cost, sample_genotype

SPACE = searchspaces.load("scnas-small")
PATCH = (16, 16, 16)


def _hook_all(net: Supernet) -> tuple[list[tuple[str, str, str]], int]:
    """Count forward calls of every candidate op module of every cell."""
    ran: list[tuple[str, str, str]] = []
    total = 0
    for layer_name, cell in net.net.cells.items():
        for edge, ops in cell.edges.items():  # type: ignore[union-attr]
            for op_name, module in ops.items():
                total += 1
                module.register_forward_hook(
                    lambda *_a, k=(layer_name, edge, op_name): ran.append(k)
                )
    return ran, total


def _expected_ran(net: Supernet) -> list[tuple[str, str, str]]:
    out = []
    for layer in SPACE.layers():
        for node, terms in enumerate(net.last_plans[layer.key], start=1):
            out.extend((layer.name, f"{t.source}_{node}", t.op) for t in terms if t.op != "zero")
    return sorted(out)


def test_unsampled_operations_run_no_forward() -> None:
    net = Supernet(SPACE, 1, 2)
    ran, total = _hook_all(net)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        ran.clear()
        net.zero_grad(set_to_none=True)
        net(torch.randn(1, 1, *PATCH), generator=gen).mean().backward()
        assert sorted(ran) == _expected_ran(net)
        assert len(ran) <= 5 * len(SPACE.layers()) < total
        # and nothing unsampled receives a gradient
        for layer_name, cell in net.net.cells.items():
            for edge, ops in cell.edges.items():  # type: ignore[union-attr]
                for op_name, module in ops.items():
                    used = (layer_name, edge, op_name) in ran
                    for p in module.parameters():
                        assert (p.grad is not None) == used


def test_mixed_mode_runs_every_op() -> None:
    net = Supernet(SPACE, 1, 2, mode="mixed")
    ran, total = _hook_all(net)
    net(torch.randn(1, 1, *PATCH))
    n_zero = sum(1 for _ in SPACE.layers() for _ in SPACE.edges())
    assert len(ran) == len(set(ran)) == total - n_zero


@pytest.mark.parametrize("mode", ["sampled", "mixed"])
def test_gradients_reach_arch_logits(mode: str) -> None:
    net = Supernet(SPACE, 1, 2, mode=mode, tau=1.0)
    y = net(torch.randn(1, 1, *PATCH), generator=torch.Generator().manual_seed(1))
    torch.nn.functional.cross_entropy(y, torch.randint(0, 2, (1, *PATCH))).backward()
    for key in SPACE.arch_keys():
        assert net.arch_ops[key].grad is not None and net.arch_ops[key].grad.abs().sum() > 0
        # node 3 chooses 2 of its 3 inputs: its input logits get a gradient
        assert net.arch_inputs[key].grad is not None
        assert net.arch_inputs[key].grad[3:].abs().sum() > 0


def test_same_seed_same_architecture() -> None:
    a, b = Supernet(SPACE, 1, 2), Supernet(SPACE, 1, 2)
    x = torch.randn(1, 1, *PATCH)
    a(x, generator=torch.Generator().manual_seed(7))
    b.generator = torch.Generator().manual_seed(7)
    b(x)
    assert a.sampled_genotype() == b.sampled_genotype()
    b(x)  # the generator moved on: another child
    assert a.sampled_genotype() != b.sampled_genotype()


def test_parameters_partition() -> None:
    net = Supernet(SPACE, 1, 2)
    arch, weights = net.arch_parameters(), net.weight_parameters()
    assert len(arch) == 2 * len(SPACE.arch_keys())
    ids = {id(p) for p in arch} | {id(p) for p in weights}
    assert ids == {id(p) for p in net.parameters()}
    assert not {id(p) for p in arch} & {id(p) for p in weights}


def test_arch_logits_numpy_round_trip_and_decode() -> None:
    net = Supernet(SPACE, 1, 2)
    rng = np.random.default_rng(0)
    logits = {
        k: {"ops": rng.normal(size=v["ops"].shape), "inputs": rng.normal(size=v["inputs"].shape)}
        for k, v in net.arch_logits().items()
    }
    net.load_arch_logits(logits)
    back = net.arch_logits()
    for k in logits:
        assert back[k]["ops"].dtype == np.float32
        np.testing.assert_allclose(back[k]["ops"], logits[k]["ops"], rtol=1e-6)
    assert decode(back, SPACE) == decode(logits, SPACE)


def test_low_temperature_samples_the_mode() -> None:
    net = Supernet(SPACE, 1, 2)
    rng = np.random.default_rng(1)
    logits = {
        k: {
            "ops": 20 * rng.normal(size=v["ops"].shape),
            "inputs": 20 * rng.normal(size=v["inputs"].shape),
        }
        for k, v in net.arch_logits().items()
    }
    net.load_arch_logits(logits)
    net.set_temperature(0.1)
    net(torch.randn(1, 1, *PATCH), generator=torch.Generator().manual_seed(0))
    assert net.sampled_genotype().cells == decode(logits, SPACE).cells


def test_entropies_start_uniform() -> None:
    net = Supernet(SPACE, 1, 2)
    ent = net.entropies()
    # zero competes only on node 2's two edges (it keeps both inputs); 4 rows choose among 8
    want = (2 * math.log(9) + 4 * math.log(8)) / 6
    assert ent["ops"] == pytest.approx(want, rel=1e-5)
    assert ent["inputs"] == pytest.approx(math.log(3), rel=1e-5)  # node 3: 3 subsets
    assert net.max_entropies() == pytest.approx(ent, rel=1e-5)


def test_zero_is_never_sampled_where_connectivity_is_chosen() -> None:
    net = Supernet(SPACE, 1, 2)
    zero = SPACE.ops.index("zero")
    with torch.no_grad():
        for p in net.arch_ops.values():
            p[:, zero] = 20.0  # zero would win every edge if it could
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        net(torch.randn(1, 1, *PATCH), generator=gen)
        for plan in net.last_plans.values():
            assert [t.op for t in plan[0]] != ["zero"]  # node 1's only edge
            assert all(t.op != "zero" for t in plan[2])  # node 3 chooses 2 of 3 inputs
            assert [t.op for t in plan[1]] == ["zero", "zero"]  # node 2 keeps both
    # decode: zero nowhere it is masked, and node 2 is not left dead
    g = decode(net.arch_logits(), SPACE)
    for cell in g.cells:
        ops = [[e.op for e in node.inputs] for node in cell.nodes]
        assert "zero" not in ops[0] + ops[2]
        assert ops[1].count("zero") == 1


def test_sampled_child_costs_what_its_derived_net_costs() -> None:
    net = Supernet(SPACE, 1, 2)
    ran, _ = _hook_all(net)
    net(torch.randn(1, 1, *PATCH), generator=torch.Generator().manual_seed(3))
    genotype = net.sampled_genotype()
    edge_params = {id(p) for cell in net.net.cells.values() for p in cell.edges.parameters()}  # type: ignore[union-attr]
    fixed = sum(p.numel() for p in net.weight_parameters() if id(p) not in edge_params)
    used = sum(
        p.numel()
        for layer_name, edge, op in set(ran)
        for p in net.net.cells[layer_name].edges[edge][op].parameters()  # type: ignore[index]
    )
    derived = DerivedNet(genotype, SPACE, 1, 2)
    assert fixed + used == sum(p.numel() for p in derived.parameters())


def test_expected_cost_is_differentiable_and_matches_a_certain_architecture() -> None:
    net = Supernet(SPACE, 1, 2)
    with torch.no_grad():  # break the symmetry between edges (uniform: equal expected op costs)
        for p in net.arch_ops.values():
            p.normal_()
    cost = expected_cost(net.logits(), SPACE, (32, 32, 32))
    (cost["params"] + cost["flops"] * 1e-6 + cost["act_bytes"] * 1e-6).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.arch_parameters())
    genotype = sample_genotype(SPACE, 5)
    certain = {}
    for cell in genotype.cells:
        ops = torch.full((len(SPACE.edges()), len(SPACE.ops)), -1e4)
        inputs = torch.full((len(SPACE.edges()),), -1e4)
        for r, (j, i) in enumerate(SPACE.edges()):
            op = cell.edges().get((j, i))
            ops[r, SPACE.ops.index(op or "zero")] = 1e4
            if op is not None:
                inputs[r] = 1e4
        certain[cell.key] = {"ops": ops, "inputs": inputs}
    got = expected_cost(certain, SPACE, (32, 32, 32))
    want = architecture_cost(genotype, SPACE, 1, 2, (32, 32, 32))
    assert float(got["params"]) == pytest.approx(want.params, rel=1e-4)
    assert float(got["flops"]) == pytest.approx(want.flops, rel=1e-4)
    assert float(got["act_bytes"]) == pytest.approx(want.act_bytes, rel=1e-4)


def test_two_dimensional_supernet() -> None:
    net = Supernet(SPACE, 2, 3, spatial_dims=2)
    y = net(torch.randn(2, 2, 32, 24))
    assert y.shape == (2, 3, 32, 24)
