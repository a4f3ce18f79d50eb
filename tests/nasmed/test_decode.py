"""Decoding hand-written logits into genotypes (a pure function, no modules)."""

from __future__ import annotations

import numpy as np
import pytest

from nasmed.genotype import CellGenotype, EdgeChoice, NodeChoice
from nasmed.search.decode import decode
from searchspaces import SearchSpace

# 3 nodes keeping 2 inputs, 3 ops; edges (0,1) (0,2) (1,2) (0,3) (1,3) (2,3)
SPACE = SearchSpace(
    name="tiny",
    levels=1,
    base_channels=4,
    nodes=3,
    inputs_per_node=2,
    ops=("conv3", "identity", "zero"),
)


def _logits(ops_rows: list[list[float]], inputs: list[float]) -> dict[str, np.ndarray]:
    return {"ops": np.array(ops_rows), "inputs": np.array(inputs)}


def _all(cell: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    return {k: cell for k in SPACE.arch_keys()}


def test_decode_hand_written_logits() -> None:
    cell = _logits(
        [
            [0.0, 2.0, 0.0],  # 0->1 identity
            [1.0, 0.0, 0.0],  # 0->2 conv3
            [0.0, 0.0, 3.0],  # 1->2 zero
            [5.0, 0.0, 0.0],  # 0->3 conv3 (dropped: input logit lowest)
            [0.0, 1.0, 0.0],  # 1->3 identity
            [2.0, 0.0, 1.0],  # 2->3 conv3
        ],
        [0.0, 0.0, 0.0, -1.0, 0.5, 0.2],
    )
    g = decode(_all(cell), SPACE, seed=3, search={"mode": "sampled"})
    want = (
        NodeChoice((EdgeChoice(0, "identity"),)),
        NodeChoice((EdgeChoice(0, "conv3"), EdgeChoice(1, "zero"))),
        NodeChoice((EdgeChoice(1, "identity"), EdgeChoice(2, "conv3"))),
    )
    assert g.cells == tuple(CellGenotype(k, want) for k in SPACE.arch_keys())
    assert g.space == "tiny" and g.space_hash == SPACE.content_hash()
    assert g.seed == 3 and g.search == {"mode": "sampled"}


def test_zero_masked_where_connectivity_is_chosen_and_no_dead_node() -> None:
    cell = _logits(
        [
            [0.0, 0.0, 9.0],  # 0->1: node 1's only edge: zero would kill it
            [0.0, 1.0, 9.0],  # 0->2 \ node 2 keeps both inputs: zero competes, but not
            [2.0, 0.0, 9.0],  # 1->2 / on both (1->2's best other op has the higher logit)
            [0.0, 0.0, 9.0],  # node 3 chooses 2 of 3 inputs: zero is masked
            [0.0, 0.0, 9.0],
            [0.0, 0.0, 9.0],
        ],
        [0.0] * 6,
    )
    g = decode(_all(cell), SPACE)
    assert g.cells[0].nodes == (
        NodeChoice((EdgeChoice(0, "conv3"),)),  # ties: the first op
        NodeChoice((EdgeChoice(0, "zero"), EdgeChoice(1, "conv3"))),
        NodeChoice((EdgeChoice(0, "conv3"), EdgeChoice(1, "conv3"))),  # ties: lower sources
    )
    g = decode(_all(cell), SPACE, exclude_zero=True)
    assert g.cells[0].nodes[1] == NodeChoice((EdgeChoice(0, "identity"), EdgeChoice(1, "conv3")))


def test_one_zero_edge_may_stay_when_another_lives() -> None:
    cell = _logits(
        [[1.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 3.0, 0.0]] + [[1.0, 0, 0]] * 3, [0.0] * 6
    )
    node2 = decode(_all(cell), SPACE).cells[0].nodes[1]
    assert node2 == NodeChoice((EdgeChoice(0, "zero"), EdgeChoice(1, "identity")))


def test_per_key_logits_differ() -> None:
    logits = _all(_logits([[1.0, 0.0, 0.0]] * 6, [0.0] * 6))
    logits = {**logits, "decoder": _logits([[0.0, 1.0, 0.0]] * 6, [0.0] * 6)}
    g = decode(logits, SPACE)
    assert g.cell("encoder").nodes[0].inputs[0].op == "conv3"
    assert g.cell("decoder").nodes[0].inputs[0].op == "identity"


def test_bad_logits() -> None:
    with pytest.raises(ValueError, match="lack architecture key 'encoder'"):
        decode({}, SPACE)
    with pytest.raises(ValueError, match="expected ops"):
        decode(_all(_logits([[0.0, 0.0]] * 6, [0.0] * 6)), SPACE)
