"""The architecture estimators: planted problems with a known answer, and their mechanics."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import searchspaces
from nasmed.errors import ConfigError
from nasmed.search.config import SearchConfig
from nasmed.search.estimators import Reinforce, make_estimator
from nasmed.search.loop import run_search
from nasmed.search.planted import (
    HARMFUL_OP,
    PLANTED_OP,
    planted_config,
    planted_space,
    search_planted,
)
from nasmed.supernet import Supernet
from nasmed.supernet.plans import Choice, binary_plan, fixed_plan, log_prob, sample_choice
from nasmed.train.history import read_history

SMALL = searchspaces.load("scnas-small")


@pytest.mark.parametrize("estimator", ["gdas", "proxyless", "reinforce"])
def test_every_estimator_finds_the_planted_op_and_decides(estimator: str) -> None:
    results = [search_planted(planted_config(estimator, seed)) for seed in range(5)]
    uniform = 1 / len(planted_space().ops)
    found = sum(r.chosen == PLANTED_OP for r in results)
    avoided = sum(r.probabilities[HARMFUL_OP] < uniform for r in results)
    decided = sum(r.entropy < 0.5 * r.max_entropy for r in results)
    summary = [(r.chosen, round(r.entropy, 2)) for r in results]
    assert found >= 4, summary
    assert avoided >= 4, summary
    assert decided >= 4, summary


def test_the_old_gdas_schedule_does_not_decide() -> None:
    # tau 10 -> 0.1, no entropy term, lr 3e-3: what the search ran before (without even the
    # coupled decay): the logits barely move (the planted test above would fail)
    old = planted_config("gdas", 0, tau_start=10.0, tau_end=0.1, entropy_weight=0.0, arch_lr=3e-3)
    r = search_planted(old)
    assert r.entropy > 0.8 * r.max_entropy


def test_planted_search_is_deterministic() -> None:
    a = search_planted(planted_config("proxyless", 3, epochs=6, warmup_epochs=2))
    b = search_planted(planted_config("proxyless", 3, epochs=6, warmup_epochs=2))
    assert a.probabilities == b.probabilities


def _logits(net: Supernet) -> tuple[torch.Tensor, torch.Tensor]:
    d = net.logits()["encoder"]
    return d["ops"], d["inputs"]


def test_binary_plan_runs_two_ops_per_edge_and_its_gradient_compares_them() -> None:
    net = Supernet(SMALL, 1, 2)
    ops, inputs = _logits(net)
    plan = binary_plan(ops, inputs, SMALL, torch.Generator().manual_seed(0))
    for node, terms in enumerate(plan, start=1):
        by_edge: dict[int, list[str]] = {}
        for t in terms:
            by_edge.setdefault(t.source, []).append(t.op)
        assert all(len(set(v)) == 2 for v in by_edge.values())
        kept = SMALL.kept(node)
        assert kept <= len(by_edge) <= min(node, 2 * kept)
    # node 1 (one edge, no input choice): weights 1 and 0, d(loss)/d(alpha) compares the two
    t1, t2 = plan[0]
    assert float(t1.weight.detach()) == 1.0 and float(t2.weight.detach()) == 0.0  # type: ignore[union-attr]
    a, b = SMALL.ops.index(t1.op), SMALL.ops.index(t2.op)
    # a loss that prefers the inactive op: L = -2 * w_b + 0.5 * w_a
    (0.5 * t1.weight - 2.0 * t2.weight).backward()  # type: ignore[operator]
    grad = net.arch_ops["encoder"].grad
    assert grad is not None
    row = grad[0]
    assert float(row[a]) == pytest.approx(-float(row[b]))
    assert float(row[b]) < 0 < float(row[a])  # descent raises the better op b
    others = [i for i in range(len(SMALL.ops)) if i not in (a, b)]
    assert float(row[others].abs().sum()) == 0.0


def test_sample_choice_fixed_plan_and_log_prob() -> None:
    net = Supernet(SMALL, 1, 2)
    with torch.no_grad():
        net.arch_ops["encoder"][:, SMALL.ops.index("dw3")] = 3.0
    ops, inputs = _logits(net)
    choice = sample_choice(ops, inputs, SMALL, torch.Generator().manual_seed(1))
    plan = fixed_plan(choice, SMALL)
    assert [len(terms) for terms in plan] == [SMALL.kept(i) for i in range(1, 4)]
    assert all(t.weight is None for terms in plan for t in terms)
    # by hand: rows 0 (node 1), 1-2 (node 2 keeps both), 3 + j for node 3's two sources j
    log_ops = torch.log_softmax(ops, dim=-1).detach()
    rows = [0, 1, 2, *(3 + j for j in choice.sources(SMALL, 3))]
    want = sum(float(log_ops[r, choice.ops[r]]) for r in rows) + math.log(1 / 3)
    assert float(log_prob(choice, ops, inputs, SMALL)) == pytest.approx(want, rel=1e-5)
    assert choice.subsets[:2] == (None, None) and isinstance(choice, Choice)


def test_reinforce_runs_the_child_without_gradients_and_keeps_a_baseline() -> None:
    net = Supernet(SMALL, 1, 2)
    est = Reinforce()
    grad_enabled: list[bool] = []

    def loss_of(plans: object) -> torch.Tensor:
        grad_enabled.append(torch.is_grad_enabled())
        return torch.tensor(1.0 + len(grad_enabled))  # losses 2, 3, ...

    gen = torch.Generator().manual_seed(0)
    surrogate, loss = est.surrogate(net, loss_of, gen)
    assert grad_enabled == [False] and loss == 2.0 and est.baseline == 2.0
    assert float(surrogate) == 0.0  # the first step only sets the baseline
    surrogate, loss = est.surrogate(net, loss_of, gen)
    assert loss == 3.0 and est.baseline == pytest.approx(0.9 * 2 + 0.1 * 3)
    surrogate.backward()
    grad = net.arch_ops["encoder"].grad
    assert grad is not None and float(grad.abs().sum()) > 0
    assert all(p.grad is None for p in net.weight_parameters())
    # that child was worse than the baseline (3 > 2): descent lowers its sampled ops' logits
    replay = torch.Generator().manual_seed(0)
    logits = net.logits()
    draws = [
        {k: sample_choice(d["ops"], d["inputs"], SMALL, replay) for k, d in logits.items()}
        for _ in range(2)
    ]
    second = draws[1]["encoder"]
    assert float(grad[0, second.ops[0]]) > 0
    assert float(grad[0].sum()) == pytest.approx(0.0, abs=1e-6)
    state = est.state_dict()
    fresh = make_estimator("reinforce")
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state


def test_estimator_and_entropy_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="--estimator 'darts' is not one of"):
        SearchConfig(estimator="darts")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--entropy-weight"):
        SearchConfig(entropy_weight=-1.0)
    c = SearchConfig(epochs=10, warmup_epochs=2, entropy_weight=4.0)
    ramp = [c.entropy_weight_at(e) for e in range(10)]
    assert ramp[:3] == [0.0, 0.0, 0.0] and ramp[-1] == 4.0
    assert all(b > a for a, b in itertools.pairwise(ramp[2:]))


def _spread(net: Supernet) -> torch.Tensor:
    """Every key's op logits minus their mean over each edge's allowed ops (allowed only)."""
    m = net.op_allowed
    out = []
    for p in net.arch_ops.values():
        a = p.detach()
        out.append((a - (a * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True))[m])
    return torch.cat(out)


def test_the_entropy_step_scales_near_uniform_log_odds_by_one_plus_its_rate() -> None:
    net = Supernet(SMALL, 1, 2)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.arch_ops.values():
            p.copy_(1e-4 * torch.randn_like(p))
    before = _spread(net)
    make_estimator("gdas").decide(net, 0.5)
    after = _spread(net)
    assert torch.allclose(after, 1.5 * before, rtol=0, atol=0.02 * float(before.abs().max()))
    make_estimator("gdas").decide(net, 0.0)  # rate 0: nothing moves
    assert torch.equal(_spread(net), after)


def test_the_entropy_rates_add_up_to_the_weight_whatever_the_length() -> None:
    for epochs, warmup, steps in ((12, 3, 25), (3, 1, 2), (40, 10, 100), (2, 1, 5)):
        c = SearchConfig(epochs=epochs, warmup_epochs=warmup, steps_per_epoch=steps)
        total = sum(c.entropy_weight_at(e) / c.entropy_steps * steps for e in range(epochs))
        assert total == pytest.approx(c.entropy_weight)


def test_reinforce_with_several_children_uses_the_leave_one_out_baseline() -> None:
    net = Supernet(SMALL, 1, 2)
    torch.manual_seed(2)
    with torch.no_grad():  # non-uniform: the children's log-probabilities differ
        for p in net.arch_parameters():
            p.copy_(torch.randn_like(p))
    est = Reinforce(samples=3)
    losses = iter([2.0, 3.0, 7.0])
    gen = torch.Generator().manual_seed(1)
    surrogate, loss = est.surrogate(net, lambda plans: torch.tensor(next(losses)), gen)
    assert loss == pytest.approx(4.0)  # the children's mean
    replay = torch.Generator().manual_seed(1)
    logits = net.logits()
    logps = []
    for _ in range(3):
        choice = {k: sample_choice(d["ops"], d["inputs"], SMALL, replay) for k, d in logits.items()}
        logps.append(
            sum(
                float(log_prob(c, logits[k]["ops"], logits[k]["inputs"], SMALL).detach())
                for k, c in choice.items()
            )
        )
    advantages = [2 - 5, 3 - 4.5, 7 - 2.5]  # each loss minus the mean of the other two
    want = sum(a * lp for a, lp in zip(advantages, logps)) / 3
    assert abs(want) > 0.1 and float(surrogate.detach()) == pytest.approx(want, rel=1e-4)
    with pytest.raises(ValueError, match="samples"):
        Reinforce(samples=0)


def test_a_short_real_search_decides_only_with_the_entropy_step(
    search_task: Path, search_work: Path, tmp_path: Path
) -> None:
    # 1 warm-up + 3 search epochs of 3 steps on scnas-small at 16^3: seconds on a CPU
    base = SearchConfig(
        space="scnas-small",
        epochs=4,
        warmup_epochs=1,
        steps_per_epoch=3,
        patch=(16, 16, 16),
        batch_size=1,
        val_every=100,
        seed=1,
    )
    fractions = {}
    for weight in (base.entropy_weight, 0.0):
        config = replace(base, entropy_weight=weight)
        run = tmp_path / f"w{weight}"
        run_search(search_task, run, config, device="cpu", work_dir=search_work, progress=False)
        last = read_history(run / "history.csv")[-1]
        fractions[weight] = last["entropy_ops"] / last["entropy_ops_max"]
    assert fractions[base.entropy_weight] <= 0.5, fractions  # the default decides
    assert fractions[0.0] > 0.8, fractions  # the estimator alone, 9 steps: it does not
