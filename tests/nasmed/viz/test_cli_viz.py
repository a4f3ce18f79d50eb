"""``nasmed show --png`` and ``nasmed inspect --png``."""

from __future__ import annotations

from pathlib import Path

import pytest

import searchspaces
from nasmed.cli.main import main
from nasmed.supernet import sample_genotype

from .conftest import assert_png


def test_show_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 0).save(path)
    png = tmp_path / "out" / "cells.png"
    assert main(["show", str(path), "--png", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().out
    assert_png(png)


def test_show_png_into_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 0).save(path)
    (tmp_path / "figures").mkdir()
    assert main(["show", str(path), "--png", str(tmp_path / "figures")]) == 2
    assert "is a folder; give a PNG file name" in capsys.readouterr().err
    assert main(["show", str(path), "--png", str(tmp_path)]) == 2  # the folder of the genotype
    assert "--png contains the input" in capsys.readouterr().err


def test_inspect_png(tiny_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "case.png"
    assert main(["inspect", str(tiny_task), "--png", str(png), "--case", "synth_001"]) == 0
    assert f"wrote {png}" in capsys.readouterr().out
    assert_png(png)


def test_inspect_png_unknown_case(
    tiny_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "case.png"
    assert main(["inspect", str(tiny_task), "--png", str(png), "--case", "nope"]) == 2
    assert "no case named 'nope'" in capsys.readouterr().err
    assert not png.exists()


def test_inspect_png_invalid_task(tmp_path: Path) -> None:
    png = tmp_path / "case.png"
    (tmp_path / "task").mkdir()
    assert main(["inspect", str(tmp_path / "task"), "--png", str(png)]) == 2
    assert not png.exists()
