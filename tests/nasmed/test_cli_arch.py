"""``nasmed show-space`` and ``nasmed show``."""

from __future__ import annotations

from pathlib import Path

import pytest

import searchspaces
from nasmed.cli.main import main
from nasmed.supernet import sample_genotype


def test_show_space(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-space", "scnas-small", "--patch", "32", "32", "16"]) == 0
    out = capsys.readouterr().out
    space = searchspaces.load("scnas-small")
    assert f"size: {space.distinct_size()} distinct networks (10^20.8); {space.size()} " in out
    assert "parameters:" in out and "child at patch 32x32x16" in out
    assert "FLOP" in out and "activations" in out
    for op in space.ops:
        assert op in out


def test_show_space_bad_patch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-space", "scnas", "--patch", "64", "64", "60"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nearest valid patch: 64 64 64" in err


def test_show_space_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-space", "nope"]) == 2
    assert "unknown search space 'nope'" in capsys.readouterr().err


def test_show_genotype(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 0).save(path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cell encoder:" in out and "node 1 = sum(input:" in out
    assert "space check: fits" in out


def test_show_malformed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "genotype.json"
    path.write_text("{}")
    assert main(["show", str(path)]) == 2
    assert "malformed genotype" in capsys.readouterr().err
