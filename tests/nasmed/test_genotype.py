"""Genotypes: JSON round trip, atomic save/load, malformed files, space checks, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import searchspaces
from nasmed.errors import GenotypeError
from nasmed.genotype import Genotype, check_space, load, save
from nasmed.supernet import sample_genotype

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
