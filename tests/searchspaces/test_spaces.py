"""Search spaces: the shipped files, validation errors, structure, size, hashing."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import pytest
import yaml

import searchspaces
from searchspaces import CellType, SearchSpace, SpaceError

DINTS_SIZE_LOG10 = 92.8  # MONAI DiNTS, 12 blocks x 4 depths (docs/search.md)


def _write(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(searchspaces.space_path("scnas-small").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_list_and_load_shipped() -> None:
    names = searchspaces.list()
    assert {"scnas", "scnas-small", "scnas-shared"} <= set(names)
    for name in names:
        space = searchspaces.load(name)
        assert space.name == name
        assert space.default_patch is not None
        assert isinstance(space.size(), int) and space.size() > 1


def test_no_torch_import() -> None:
    import subprocess

    code = "import searchspaces, sys; searchspaces.load('scnas'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_scnas_is_at_least_as_large_as_dints() -> None:
    """scnas-shared and the default before the fixed top level (scnas-v3) are; the default
    itself is smaller since 7 Dec 2026 (test_default_space_is_the_measured_choice)."""
    shared, layer = searchspaces.load("scnas-shared"), searchspaces.load("scnas-v3")
    assert math.log10(shared.size()) >= DINTS_SIZE_LOG10
    assert layer.size() > shared.size()
    assert shared.channels() == layer.channels()


def test_size_counts_subsets_and_ops() -> None:
    space = searchspaces.load("scnas-small")  # 3 nodes, 2 kept, 9 ops, 4 cell types
    per_cell = (1 * 9) * (1 * 9**2) * (3 * 9**2)
    assert space.cell_size() == per_cell
    assert space.size() == per_cell**4


def test_layers_and_keys() -> None:
    space = searchspaces.load("scnas-small")
    names = [layer.name for layer in space.layers()]
    assert names == [
        "encoder_l0_c0",
        "reduction_l1",
        "encoder_l1_c0",
        "reduction_l2",
        "encoder_l2_c0",
        "expansion_l1",
        "decoder_l1_c0",
        "expansion_l0",
        "decoder_l0_c0",
    ]
    assert space.arch_keys() == ("encoder", "reduction", "expansion", "decoder")
    layer = searchspaces.load("scnas")
    assert layer.arch_keys() == tuple(lay.name for lay in layer.layers())
    assert {lay.cell_type for lay in layer.layers()} == set(CellType)


def test_edges_order() -> None:
    space = searchspaces.load("scnas-small")
    assert space.edges() == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert [space.kept(i) for i in (1, 2, 3)] == [1, 2, 2]


def test_hash_ignores_name_and_description(tmp_path: Path) -> None:
    base = searchspaces.load("scnas-small")
    renamed = searchspaces.load(_write(tmp_path, name="other", description="x"))
    assert renamed.content_hash() == base.content_hash()
    changed = searchspaces.load(_write(tmp_path, nodes=4))
    assert changed.content_hash() != base.content_hash()


def test_unknown_op_names_it_and_lists_valid(tmp_path: Path) -> None:
    path = _write(tmp_path, ops=["conv3", "conv7x7"])
    with pytest.raises(SpaceError) as err:
        searchspaces.load(path)
    message = str(err.value)
    assert "conv7x7" in message and "conv3" in message and "identity" in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"base_channels": 0}, "base_channels"),
        ({"base_channels": 8.5}, "base_channels"),
        ({"max_channels": 4}, "max_channels"),
        ({"channel_growth": 0.5}, "channel_growth"),
    ],
)
def test_bad_channel_counts(tmp_path: Path, changes: dict[str, object], field: str) -> None:
    with pytest.raises(SpaceError, match=field):
        searchspaces.load(_write(tmp_path, **changes))


def test_patch_not_divisible_suggests_nearest(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=r"nearest valid patch: 32 40 32"):
        searchspaces.load(_write(tmp_path, default_patch=[33, 41, 30]))
    space = searchspaces.load("scnas")  # divisor 16
    with pytest.raises(SpaceError, match=r"divisible by 16.*nearest valid patch: 64 64 16"):
        space.check_patch((64, 70, 10))
    assert space.check_patch([96, 96, 96]) == (96, 96, 96)


def test_a_one_voxel_bottleneck_is_refused() -> None:
    space = searchspaces.load("scnas")  # divisor 16: a 16^3 patch leaves 1x1x1 at the bottom
    with pytest.raises(SpaceError, match=r"bottleneck of one voxel.*e.g. 32 32 32"):
        space.check_patch((16, 16, 16))
    assert space.check_patch((32, 16, 16)) == (32, 16, 16)  # 2x1x1 voxels: a norm trains
    macro = searchspaces.load("scnas-macro")
    divs = macro.axis_divisors()
    with pytest.raises(SpaceError, match="bottleneck of one voxel"):
        macro.check_patch(divs)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"nodes": 0}, "nodes"),
        ({"inputs_per_node": 5}, "inputs_per_node"),
        ({"levels": None}, "missing field 'levels'"),
        ({"colour": "red"}, "unknown field"),
        ({"sharing": "sometimes"}, "sharing"),
        ({"norm": "weird"}, "norm"),
        ({"stem_stride": 3}, "stem_stride"),
        ({"ops": ["zero"]}, "other than 'zero'"),
        ({"ops": ["conv3", "conv3"]}, "twice"),
        ({"schema_version": 9}, "schema_version"),
    ],
)
def test_other_invalid_fields(tmp_path: Path, changes: dict[str, object], match: str) -> None:
    with pytest.raises(SpaceError, match=match):
        searchspaces.load(_write(tmp_path, **changes))


def test_unreadable_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=r"unknown search space 'nope'.*scnas"):
        searchspaces.load("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpaceError, match="invalid YAML"):
        searchspaces.load(bad)
    with pytest.raises(SpaceError, match="cannot read"):
        searchspaces.load(tmp_path / "missing.yaml")


def test_round_trip_dict() -> None:
    space = searchspaces.load("scnas")
    again = SearchSpace.from_dict(space.to_dict())
    assert again == space and again.content_hash() == space.content_hash()


def _networks(space: SearchSpace) -> set[object]:
    """Every network of a one-key space by enumeration: per node, its non-zero terms."""
    import itertools

    per_node = []
    for i in range(1, space.nodes + 1):
        options = set()
        for sources in itertools.combinations(range(i), space.kept(i)):
            for ops in itertools.product(space.ops, repeat=len(sources)):
                options.add(frozenset((s, o) for s, o in zip(sources, ops) if o != "zero"))
        per_node.append(options)
    return set(itertools.product(*per_node))


@pytest.mark.parametrize(
    ("nodes", "kept", "ops"),
    [
        (3, 2, ("conv3", "identity", "zero")),
        (4, 2, ("conv3", "zero")),
        (3, 3, ("conv1", "zero")),
        (3, 1, ("conv3", "identity")),
    ],
)
def test_distinct_size_by_enumeration(nodes: int, kept: int, ops: tuple[str, ...]) -> None:
    space = SearchSpace(
        name="t", levels=1, base_channels=4, nodes=nodes, inputs_per_node=kept, ops=ops
    )
    assert space.distinct_cell_size() == len(_networks(space))
    assert space.distinct_size() == space.distinct_cell_size() ** len(space.arch_keys())
    if "zero" in ops and kept < nodes:  # a zero edge can point at several sources
        assert space.distinct_size() < space.size()
    else:
        assert space.distinct_size() == space.size()


def test_old_scnas_counts_duplicates() -> None:
    old = searchspaces.load("scnas-v1")  # the figures: 10^103.2 genotypes, 10^101.7 nets
    assert round(math.log10(old.size()), 1) == 103.2
    assert round(math.log10(old.distinct_size()), 1) == 101.7


def test_new_options_keep_old_hashes_and_validate(tmp_path: Path) -> None:
    old = searchspaces.load("scnas-v1")
    explicit = searchspaces.load(
        _write_full(tmp_path, "scnas-v1", cell_output="concat", preact=False, stem_blocks=1)
    )
    assert explicit.content_hash() == old.content_hash()
    changed = searchspaces.load(_write_full(tmp_path, "scnas-v1", cell_output="residual"))
    assert changed.content_hash() != old.content_hash()
    assert changed.cell_output is searchspaces.CellOutput.RESIDUAL
    for key, value, message in [
        ("cell_output", "mean", "'cell_output' must be one of concat, residual, sum"),
        ("skip", "max", "'skip' must be one of sum, concat"),
        ("stem_blocks", 3, "'stem_blocks' must be 0, 1 or 2"),
        ("preact", "yes", "'preact' must be true or false"),
        ("fixed_levels", 2, "'fixed_levels' must be an integer in 0..levels-1"),
        ("head_kernel", 4, "'head_kernel' must be 2 or 3"),
        ("head_kernel", 3, "'head_kernel' applies to the transposed head of 'stem_blocks: 0'"),
    ]:
        with pytest.raises(SpaceError, match=message):
            searchspaces.load(_write(tmp_path, **{key: value}))


def _write_full(tmp_path: Path, name: str, **changes: object) -> Path:
    data = yaml.safe_load(searchspaces.space_path(name).read_text())
    data.update(changes)
    path = tmp_path / f"{name}-changed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_space_is_the_measured_choice() -> None:
    """scnas: residual cells without dw3, no full-resolution stage, a fixed level 0 and a 3x3x3
    transposed head (docs/search.md "What changed"); the previous defaults stay shipped."""
    names = ("scnas", "scnas-v1", "scnas-v2", "scnas-v3", "scnas-v4")
    space, v1, v2, v3, v4 = (searchspaces.load(n) for n in names)
    assert space.cell_output is searchspaces.CellOutput.RESIDUAL and not space.preact
    assert "dw3" not in space.ops and set(space.ops) < set(v1.ops)
    assert space.stem_blocks == 0 and v2.stem_blocks == 1
    assert space.fixed_levels == 1 and v3.fixed_levels == 0
    assert space.head_kernel == 3 and v4.head_kernel == v3.head_kernel == 2
    assert len({s.content_hash() for s in (space, v1, v2, v3, v4)}) == 5
    assert dataclasses.replace(v2, name="scnas-v3", stem_blocks=0, description="") == (
        dataclasses.replace(v3, description="")
    )  # the second change is the stem alone
    assert dataclasses.replace(v3, name="scnas-v4", fixed_levels=1, description="") == (
        dataclasses.replace(v4, description="")
    )  # the third change is the fixed level 0 alone
    assert dataclasses.replace(v4, name="scnas", head_kernel=3, description="") == (
        dataclasses.replace(space, description="")
    )  # the fourth is the head alone
    # 10 searched cells instead of 13: 10^74.5 distinct networks, below DiNTS' 10^92.8
    assert len(space.arch_keys()) == 10 and len(v3.arch_keys()) == 13
    assert round(math.log10(space.distinct_size()), 1) == 74.5 < DINTS_SIZE_LOG10
    assert math.log10(v3.distinct_size()) >= DINTS_SIZE_LOG10
    assert space.channels() == v1.channels() and space.divisor == v1.divisor
