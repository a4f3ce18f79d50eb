"""Balancing: the exact contiguous partition on hand-made costs, the layer profile, the table."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from torch import nn

from nasmed.errors import ConfigError
from nasmed.pipeline.balance import (
    LayerCost,
    format_balance,
    layer_weights,
    partition,
    partition_costs,
    profile_layers,
)
from nasmed.pipeline.sequential import Stash, to_sequential

from .conftest import PATCH


def _brute_force(costs: list[float], parts: int) -> float:
    n = len(costs)
    best = float("inf")
    for cuts in itertools.combinations(range(1, n), parts - 1):
        bounds = (0, *cuts, n)
        best = min(best, max(sum(costs[a:b]) for a, b in itertools.pairwise(bounds)))
    return best


@pytest.mark.parametrize(
    ("costs", "parts", "balance"),
    [
        ([1, 1, 1, 1], 2, [2, 2]),
        ([5, 1, 1, 1, 1, 1], 2, [1, 5]),
        ([1, 1, 1, 1, 1, 5], 2, [5, 1]),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9], 3, [5, 2, 2]),
        ([3, 3, 3], 3, [1, 1, 1]),
        ([0, 0, 10, 0, 0], 2, [1, 4]),
        ([4, 4, 4], 1, [3]),
    ],
)
def test_partition_hand_made(costs: list[float], parts: int, balance: list[int]) -> None:
    assert partition(costs, parts) == balance


def test_partition_is_optimal_against_brute_force() -> None:
    gen = torch.Generator().manual_seed(3)
    for trial in range(30):
        n = 2 + trial % 9
        costs = [float(c) for c in torch.rand(n, generator=gen)]
        for parts in range(1, n + 1):
            balance = partition(costs, parts)
            assert len(balance) == parts and sum(balance) == n and min(balance) >= 1
            assert max(partition_costs(costs, balance)) == pytest.approx(_brute_force(costs, parts))


def test_partition_refuses_more_partitions_than_layers() -> None:
    with pytest.raises(ConfigError, match="3 partitions but the network has only 2 layers"):
        partition([1.0, 2.0], 3)
    with pytest.raises(ConfigError, match="at least 1 partition"):
        partition([1.0], 0)


def _cost(name: str, seconds: float, params: int, act: int) -> LayerCost:
    return LayerCost(name=name, seconds=seconds, param_bytes=params, activation_bytes=act)


def test_layer_weights_by_time_memory_and_mixed() -> None:
    costs = [_cost("a", 3.0, 0, 100), _cost("b", 1.0, 100, 0)]  # memory 100 vs 300
    assert layer_weights(costs, "time") == pytest.approx([0.75, 0.25])
    assert layer_weights(costs, "memory") == pytest.approx([0.25, 0.75])
    assert layer_weights(costs, "mixed") == pytest.approx([0.5, 0.5])


def test_profile_layers_measures_and_leaves_no_trace(make_net: Callable[[str], nn.Module]) -> None:
    net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU())
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seq = to_sequential(net)
    costs = profile_layers(seq, torch.randn(2, 1, 8, 8, 8), repeats=1)
    assert [c.name for c in costs] == ["00_0", "01_1", "02_2"]
    assert costs[0].param_bytes == (4 * 27 + 4) * 4
    assert costs[2].param_bytes == 0
    out_bytes = 2 * 4 * 8**3 * 4
    assert costs[0].activation_bytes >= out_bytes  # its output
    assert all(c.seconds > 0 for c in costs)
    assert all(p.grad is None for p in net.parameters())
    assert not net.training
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_profile_of_a_unet_counts_skips_as_free(make_net: Callable[[str], nn.Module]) -> None:
    seq = to_sequential(make_net("unet"))
    costs = profile_layers(seq, torch.randn(1, 1, *PATCH), repeats=1)
    assert len(costs) == len(seq)
    for cost, layer in zip(costs, seq):
        if isinstance(layer, Stash):
            assert cost.param_bytes == 0 and cost.activation_bytes == 0
        elif any(True for _ in layer.parameters()):
            assert cost.activation_bytes > 0


def test_format_balance_table() -> None:
    costs = [_cost(f"{i:02d}_l{i}", 0.001 * (i + 1), 1024 * i, 2**20) for i in range(5)]
    text = format_balance([2, 3], costs, ["cuda:0", "cuda:1"])
    lines = text.splitlines()
    assert len(lines) == 3
    assert "cuda:0" in lines[1] and "00_l0 .. 01_l1 (2)" in lines[1]
    assert "cuda:1" in lines[2] and "02_l2 .. 04_l4 (3)" in lines[2]
    assert "3.0" in lines[1] and "12.0" in lines[2]  # milliseconds per partition
    plain = format_balance([1, 1], names=["a", "b"])
    assert "a (1)" in plain and "b (1)" in plain
