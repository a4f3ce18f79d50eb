from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasmed.errors import RunDirError
from nasmed.rundir import RUN_FILE, prepare_run_dir, read_run_info


def test_new_run_writes_run_json(tmp_path: Path) -> None:
    run, resumed = prepare_run_dir(tmp_path / "run", "search", {"seed": 1})
    assert not resumed
    info = json.loads((run / RUN_FILE).read_text())
    assert info["kind"] == "search" and info["settings"] == {"seed": 1}


def test_refuses_existing_run_without_resume(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path, "search", {"seed": 1})
    with pytest.raises(RunDirError, match="--resume"):
        prepare_run_dir(tmp_path, "search", {"seed": 1})


def test_resume_checks_immutable_settings(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path, "search", {"seed": 1, "epochs": 2})
    _, resumed = prepare_run_dir(
        tmp_path, "search", {"seed": 1, "epochs": 4}, resume=True, immutable=("seed",)
    )
    assert resumed
    with pytest.raises(RunDirError, match="seed=2"):
        prepare_run_dir(tmp_path, "search", {"seed": 2}, resume=True, immutable=("seed",))


def test_refuses_other_kind_and_foreign_folder_and_file(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path / "a", "train", {})
    with pytest.raises(RunDirError, match="'train' run"):
        prepare_run_dir(tmp_path / "a", "search", {}, resume=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("x")
    with pytest.raises(RunDirError, match="not empty"):
        prepare_run_dir(tmp_path / "b", "search", {})
    (tmp_path / "c").write_text("file")
    with pytest.raises(RunDirError, match="is a file"):
        prepare_run_dir(tmp_path / "c", "search", {})
    assert read_run_info(tmp_path / "b") is None
