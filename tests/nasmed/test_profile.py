"""Measured op costs: the profile cache, latency tables, the lazy expected latency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasmed.ops import profile
from nasmed.search.config import CostTerm
from nasmed.supernet import cost as cost_mod
from nasmed.supernet import latency as latency_mod
from nasmed.supernet import sample_genotype
from nasmed.supernet.cost import expected_cost
from nasmed.supernet.latency import LatencyTable, architecture_latency, latency_table
from searchspaces import SearchSpace

SPACE = SearchSpace(
    name="tiny",
    levels=1,
    base_channels=4,
    nodes=2,
    inputs_per_node=2,
    ops=("conv3", "p3d133", "identity", "zero"),
)
PATCH = (8, 8, 8)


@pytest.fixture(autouse=True)
def _fresh() -> None:
    latency_mod._latency_table.cache_clear()


def test_measure_op_times_and_counts_saved_tensors() -> None:
    normed = profile.measure_op("conv3", 3, 4, (6, 6, 6), repeats=1)
    bare = profile.measure_op("conv3", 3, 4, (6, 6, 6), bare=True, repeats=1)
    assert normed.seconds > 0 and bare.seconds > 0
    assert normed.saved_bytes > bare.saved_bytes > 0  # the norm keeps more for the backward
    with pytest.raises(ValueError, match="is not 3-D"):
        profile.measure_op("conv3", 3, 4, (6, 6))


def test_latency_table_is_cached_per_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = latency_table(SPACE, PATCH, cache=str(tmp_path), repeats=1)
    assert table.fixed_s > 0 and table.ops[0]["zero"] == 0.0
    assert all(table.ops[level]["conv3"] > 0 for level in range(SPACE.levels + 1))
    data = json.loads((tmp_path / profile.PROFILE_FILE).read_text())
    key = profile.device_key("cpu")
    assert list(data) == [key] and torch.__version__ in key and "float32" in key
    assert any(name == "op conv3 instance/leakyrelu c8 b2 4x4x4" for name in data[key])
    assert any(name.startswith("fixed ") for name in data[key])

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("measured again")

    latency_mod._latency_table.cache_clear()
    monkeypatch.setattr(latency_mod, "measure_op", refuse)
    monkeypatch.setattr(latency_mod, "measure", refuse)
    again = latency_table(SPACE, PATCH, cache=str(tmp_path), repeats=1)
    assert again == table  # read back from the JSON file


def test_architecture_latency_sums_the_table() -> None:
    table = LatencyTable(
        "dev",
        1.0,
        ({"conv3": 0.5, "p3d133": 0.25, "identity": 0.0, "zero": 0.0},) * 2,
        (0.0, 0.0),
        (),
    )
    g = sample_genotype(SPACE, 3)
    ops = [op for layer in SPACE.layers() for op in g.cell(layer.key).edges().values()]
    expected = 1.0 + 0.5 * ops.count("conv3") + 0.25 * ops.count("p3d133")
    assert architecture_latency(g, SPACE, table) == pytest.approx(expected)


def test_expected_latency_is_lazy_and_differentiable(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    table = LatencyTable(
        "dev",
        1.0,
        ({"conv3": 0.5, "p3d133": 0.25, "identity": 0.0, "zero": 0.0},) * 2,
        (0.0, 0.0),
        (),
    )

    def fake(*_a: object, **_k: object) -> LatencyTable:
        calls.append(1)
        return table

    monkeypatch.setattr(cost_mod, "latency_table", fake)
    n = len(SPACE.edges())
    logits = {
        k: {"ops": torch.zeros(n, 4, requires_grad=True), "inputs": torch.zeros(n)}
        for k in SPACE.arch_keys()
    }
    costs = expected_cost(logits, SPACE, PATCH)
    assert float(costs["params"].detach()) > 0 and not calls  # nothing measured for declared costs
    latency = costs["latency_s"]
    # uniform ops: every edge runs conv3 / p3d133 / identity / zero with probability 1/4
    edges = sum(SPACE.kept(i) for i in range(1, SPACE.nodes + 1)) * len(SPACE.layers())
    assert float(latency.detach()) == pytest.approx(1.0 + edges * (0.5 + 0.25) / 4)
    assert costs["latency_s"] is latency and calls == [1]
    penalty = CostTerm("latency", 1.0).penalty(costs)
    penalty.backward()
    grad = logits[SPACE.arch_keys()[0]]["ops"].grad
    assert grad is not None and float(grad[:, 0].sum()) > 0  # more conv3, more latency


def test_latency_budget_parses_and_measures_inside_no_grad(tmp_path: Path) -> None:
    from nasmed.search.config import CostMetric, parse_cost_budget

    term = parse_cost_budget("latency=0.25", 2.0)  # seconds
    assert term.metric is CostMetric.LATENCY and term.budget == pytest.approx(0.25)
    with torch.no_grad():
        m = profile.measure_op("conv1", 3, 4, (4, 4, 4), repeats=1)
    assert m.seconds > 0 and m.saved_bytes > 0
