"""Genotypes: JSON round trip, atomic save/load, malformed files, space checks, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import searchspaces
from nasmed.errors import GenotypeError
from nasmed.genotype import Genotype, check_space, genotype_space, load, save
from nasmed.models.factory import build_model
from nasmed.search.decode import decode
from nasmed.supernet import Supernet, genotype_plans, plan_genotype, sample_genotype

SPACE = searchspaces.load("scnas-small")


def test_json_round_trip(tmp_path: Path) -> None:
    g = sample_genotype(SPACE, 0)
    g = Genotype(g.space, g.space_hash, g.cells, seed=4, search={"mode": "sampled", "epochs": 3})
    assert Genotype.from_json(g.to_json()) == g
    path = tmp_path / "run" / "genotype.json"
    save(g, path)
    assert load(path) == g and Genotype.load(path) == g
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and data["space"] == "scnas-small"
    assert data["cells"]["encoder"][0] == {
        "node": 1,
        "inputs": data["cells"]["encoder"][0]["inputs"],
    }
    assert [p.name for p in path.parent.iterdir()] == ["genotype.json"]  # no temporary left


def test_to_text_lists_every_node() -> None:
    text = sample_genotype(SPACE, 1).to_text()
    assert "scnas-small" in text and text.count("node 3 = sum(") == len(SPACE.arch_keys())


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not JSON"),
        ("[]", "JSON object"),
        ('{"schema_version": 1}', "missing field 'space'"),
        ('{"schema_version": 7, "space": "s", "space_hash": "h", "cells": {}}', "schema_version 7"),
        ('{"schema_version": 1, "space": "s", "space_hash": "h", "cells": {}}', "cells"),
        (
            '{"schema_version": 1, "space": "s", "space_hash": "h", '
            '"cells": {"encoder": [{"node": 2, "inputs": []}]}}',
            "node 1 is missing",
        ),
        (
            '{"schema_version": 1, "space": "s", "space_hash": "h", '
            '"cells": {"encoder": [{"node": 1, "inputs": [{"from": 1, "op": "conv3"}]}]}}',
            "bad input",
        ),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "genotype.json"
    path.write_text(content)
    with pytest.raises(GenotypeError, match=match) as err:
        Genotype.load(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GenotypeError, match="cannot read"):
        Genotype.load(tmp_path / "nope.json")


def test_check_space() -> None:
    g = sample_genotype(SPACE, 0)
    check_space(g, SPACE)
    with pytest.raises(GenotypeError, match="from search space 'scnas-small', not 'scnas'"):
        check_space(g, searchspaces.load("scnas"))
    changed = searchspaces.SearchSpace.from_dict({**SPACE.to_dict(), "base_channels": 4})
    with pytest.raises(GenotypeError, match="changed since the genotype was made"):
        check_space(g, changed)
    other = sample_genotype(searchspaces.load("scnas-shared"), 0)
    forged = Genotype(SPACE.name, SPACE.content_hash(), other.cells)
    with pytest.raises(GenotypeError, match="nodes"):
        check_space(forged, SPACE)


def test_loads_without_torch(tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    sample_genotype(SPACE, 0).save(path)
    code = (
        "import sys, nasmed.genotype as g; "
        f"x = g.load({str(path)!r}); g.check_space(x, __import__('searchspaces').load(x.space)); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _space_file(tmp_path: Path, name: str = "mine", **changes: object) -> Path:
    """scnas-small's YAML under another name (a user's own space file)."""
    data = yaml.safe_load(searchspaces.space_path("scnas-small").read_text(encoding="utf-8"))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**data, "name": name, **changes}), encoding="utf-8")
    return path


def _makers(space: searchspaces.SearchSpace) -> list[Genotype]:
    """A genotype of ``space`` from each maker: random, decoded logits, sampled plans."""
    sampled = sample_genotype(space, 0)
    return [
        sampled,
        decode(Supernet(space, 1, 2).arch_logits(), space),
        plan_genotype(genotype_plans(sampled), space),
    ]


def test_a_space_files_genotype_carries_the_space(tmp_path: Path) -> None:
    space = searchspaces.load(_space_file(tmp_path))
    assert all(g.space_def == space for g in _makers(space))
    path = tmp_path / "run" / "genotype.json"
    sample_genotype(space, 0).save(path)
    data = json.loads(path.read_text())
    assert list(data)[-1] == "space_def" and data["space_def"] == space.to_dict()
    (tmp_path / "mine.yaml").unlink()  # the genotype alone builds, anywhere
    loaded = Genotype.load(path)
    assert loaded == sample_genotype(space, 0) and genotype_space(loaded) == space
    check_space(loaded, genotype_space(loaded))
    assert Genotype.from_json(loaded.to_json()).to_json() == path.read_text()
    net = build_model(path, 1, 2).eval()
    assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_shipped_space_genotypes_carry_no_space_def(tmp_path: Path) -> None:
    keys = ["schema_version", "space", "space_hash", "seed", "search", "cells"]
    for g in _makers(SPACE):
        assert g.space_def is None and list(g.to_dict()) == keys
    # a copy of a shipped file is that space; a shipped name with other content is not
    copy = searchspaces.load(_space_file(tmp_path, "scnas-small"))
    assert sample_genotype(copy, 0).space_def is None
    edited = searchspaces.load(_space_file(tmp_path, "scnas-small", base_channels=4))
    assert sample_genotype(edited, 0).space_def == edited
    assert genotype_space(sample_genotype(edited, 0)).base_channels == 4


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"nodes": 4}, "'space_def' has content hash .* not the genotype's space_hash"),
        ({"name": "other"}, "'space_def' is search space 'other', but 'space' is 'mine'"),
        ({"colour": "red"}, "unknown field"),
        (None, "'space_def' must be an object"),
    ],
)
def test_a_tampered_space_def_is_one_line(
    tmp_path: Path, change: dict[str, object] | None, match: str
) -> None:
    space = searchspaces.load(_space_file(tmp_path))
    data = sample_genotype(space, 0).to_dict()
    data["space_def"] = [1] if change is None else {**data["space_def"], **change}
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError, match=match) as err:
        Genotype.load(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_an_old_genotype_of_a_space_file_says_how_to_fix(tmp_path: Path) -> None:
    space = searchspaces.load(_space_file(tmp_path))
    data = sample_genotype(space, 0).to_dict()
    del data["space_def"]  # as written before genotypes carried their space
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(data))
    with pytest.raises(searchspaces.SpaceError, match="unknown search space 'mine'") as err:
        build_model(path, 1, 2)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "search again" in message and str(searchspaces.space_path("mine")) in message
