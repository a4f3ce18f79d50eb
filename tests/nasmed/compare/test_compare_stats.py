"""The statistics of ``nasmed compare`` on hand-made numbers and hand-made genotypes."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

import searchspaces
from nasmed.compare import stats
from nasmed.genotype import CellGenotype, EdgeChoice, NodeChoice
from nasmed.supernet import sample_genotype


def test_percentile_counts_ties_half() -> None:
    assert stats.percentile(0.8, [0.5, 0.6, 0.8, 0.9]) == pytest.approx(62.5)
    assert stats.percentile(1.0, [0.1, 0.2]) == 100.0
    assert stats.percentile(0.0, [0.1, 0.2]) == 0.0
    assert stats.percentile(0.5, [0.1, math.nan, 0.9]) == 50.0  # nan is left out
    with pytest.raises(ValueError, match="no random"):
        stats.percentile(0.5, [math.nan])


def test_permutation_p() -> None:
    assert stats.permutation_p(0.8, [0.5, 0.6, 0.8, 0.9]) == pytest.approx(3 / 5)
    assert stats.permutation_p(1.0, [0.1] * 9) == pytest.approx(0.1)  # the smallest: 1/(K+1)
    assert stats.permutation_p(0.0, [0.1] * 9) == 1.0


def test_expected_best_of_n() -> None:
    values = [1.0, 2.0, 3.0]
    assert stats.expected_best_of_n(values, 1) == pytest.approx(2.0)
    assert stats.expected_best_of_n(values, 2) == pytest.approx(8 / 3)  # max of (1,2),(1,3),(2,3)
    assert stats.expected_best_of_n(values, 3) == pytest.approx(3.0)
    assert stats.expected_best_of_n(values, 10) == pytest.approx(3.0)  # clipped to K
    rng = np.random.default_rng(0)
    vals = list(rng.random(7))
    brute = np.mean([max(c) for c in itertools.combinations(vals, 3)])
    assert stats.expected_best_of_n(vals, 3) == pytest.approx(brute)


def test_kendall_tau() -> None:
    assert stats.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40])[0] == pytest.approx(1.0)
    assert stats.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1])[0] == pytest.approx(-1.0)
    tau, p = stats.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])  # 5 concordant, 1 discordant pair
    assert tau == pytest.approx(4 / 6) and 0 < p <= 1
    assert math.isnan(stats.kendall_tau([1, 2, 3], [5, 5, 5])[0])
    assert math.isnan(stats.kendall_tau([1, 2], [1, 2])[0])


def test_cross_seed_rank_correlation() -> None:
    same = [1.0, 2.0, 3.0, 4.0]
    assert stats.cross_seed_rank_correlation([same, same]) == pytest.approx(1.0)
    assert stats.cross_seed_rank_correlation([same, same[::-1]]) == pytest.approx(-1.0)
    # three seeds: pairs (a,b)=1, (a,c)=-1, (b,c)=-1
    assert stats.cross_seed_rank_correlation([same, same, same[::-1]]) == pytest.approx(-1 / 3)
    assert math.isnan(stats.cross_seed_rank_correlation([same]))


def _flip_one_op(genotype, space):  # type: ignore[no-untyped-def]
    cell = genotype.cells[0]
    first = cell.nodes[0].inputs[0]
    other = next(op for op in space.ops if op != first.op)
    node = NodeChoice((EdgeChoice(first.source, other), *cell.nodes[0].inputs[1:]))
    cells = (CellGenotype(cell.key, (node, *cell.nodes[1:])), *genotype.cells[1:])
    return replace(genotype, cells=cells)


def test_agreement_by_hand() -> None:
    space = searchspaces.load("scnas-small")
    a = sample_genotype(space, 3)
    n_edges = len(space.edges()) * len(space.arch_keys())
    same = stats.agreement(a, a, space)
    assert (same.edges, same.inputs, same.ops) == (1.0, 1.0, 1.0)
    b = _flip_one_op(a, space)
    got = stats.agreement(a, b, space)
    assert got.edges == pytest.approx(1 - 1 / n_edges)
    assert got.inputs == 1.0
    kept = sum(space.kept(i) for i in range(1, space.nodes + 1)) * len(space.arch_keys())
    assert got.ops == pytest.approx(1 - 1 / kept)
    mean = stats.mean_pairwise_agreement([a, a, b], space)  # pairs: 1, x, x
    assert mean.edges == pytest.approx((1 + 2 * got.edges) / 3)
    with pytest.raises(ValueError):
        stats.mean_pairwise_agreement([a], space)


def test_chance_agreement_exact_and_by_sampling() -> None:
    space = searchspaces.load("scnas-small")  # 3 nodes keeping 1, 2, 2 inputs; 9 ops
    chance = stats.chance_agreement(space)
    # node 1 and 2 keep all their 3 edges (p=1): 1/9 each; node 3's 3 edges p=2/3: 1/9 + 4/81
    assert chance.edges == pytest.approx((3 / 9 + 3 * (1 / 9 + 4 / 81)) / 6)
    assert chance.ops == pytest.approx(1 / 9)
    rng = np.random.default_rng(0)
    draws = [sample_genotype(space, rng) for _ in range(400)]
    sampled = np.mean([stats.agreement(a, b, space).edges for a, b in zip(draws[::2], draws[1::2])])
    assert sampled == pytest.approx(chance.edges, abs=0.02)
