"""The run-folder object: mutable settings on resume, settings added later, cleanup, release."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasmed.errors import RunDirError
from nasmed.rundir import HISTORY_FILE, LOCK_FILE, RUN_FILE
from nasmed.runfolder import RunFolder

SETTINGS = {"seed": 1, "time_budget": 60.0, "workers": 2}
MUTABLE = ("time_budget", "workers")


def _started(run: Path) -> None:
    (run / HISTORY_FILE).write_text("epoch\n0\n")
    (run / "ckpt.pt").write_bytes(b"x")


def test_mutable_settings_change_on_resume_and_are_recorded(tmp_path: Path) -> None:
    first = RunFolder.open(
        tmp_path / "run", "search", SETTINGS, mutable=MUTABLE, checkpoint="ckpt.pt"
    )
    assert not first.resumed and not first.existed
    _started(first.path)
    first.release()
    more = {**SETTINGS, "time_budget": 120.0, "workers": 0}
    again = RunFolder.open(first.path, "search", more, resume=True, mutable=MUTABLE,
                           checkpoint="ckpt.pt")  # fmt: skip
    assert again.resumed
    recorded = json.loads((first.path / RUN_FILE).read_text())["settings"]
    assert recorded == {"seed": 1, "time_budget": 120.0, "workers": 0}
    again.release()
    with pytest.raises(
        RunDirError, match="cannot resume with seed=2; the run was started with seed=1"
    ):
        RunFolder.open(first.path, "search", {**more, "seed": 2}, resume=True, mutable=MUTABLE,
                       checkpoint="ckpt.pt")  # fmt: skip


def test_settings_added_later_resume_old_folders_only_with_the_old_behaviour(
    tmp_path: Path,
) -> None:
    old = RunFolder.open(tmp_path / "run", "train", {"seed": 1}, checkpoint="ckpt.pt")
    _started(old.path)
    old.release()
    added = {"amp_dtype": "auto"}
    same = RunFolder.open(old.path, "train", {"seed": 1, "amp_dtype": "auto"}, resume=True,
                          added=added, checkpoint="ckpt.pt")  # fmt: skip
    same.release()
    with pytest.raises(RunDirError, match="cannot resume with amp_dtype='bf16'"):
        RunFolder.open(old.path, "train", {"seed": 1, "amp_dtype": "bf16"}, resume=True,
                       added=added, checkpoint="ckpt.pt")  # fmt: skip


def test_discard_removes_what_a_fresh_run_wrote(tmp_path: Path) -> None:
    fresh = RunFolder.open(tmp_path / "new", "train", SETTINGS)
    (fresh.path / "plan.json").write_text("{}")
    fresh.discard()
    fresh.release()
    assert not fresh.path.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    kept = RunFolder.open(empty, "train", SETTINGS)
    assert kept.existed
    (empty / "plan.json").write_text("{}")
    kept.discard()
    kept.release()
    assert empty.is_dir() and [p.name for p in empty.iterdir()] == []


def test_discard_keeps_a_resumed_runs_files(tmp_path: Path) -> None:
    run = RunFolder.open(tmp_path / "run", "train", SETTINGS, checkpoint="ckpt.pt")
    _started(run.path)
    run.release()
    resumed = RunFolder.open(run.path, "train", SETTINGS, resume=True, checkpoint="ckpt.pt")
    resumed.discard()
    assert (run.path / "ckpt.pt").is_file() and (run.path / LOCK_FILE).is_file()
    resumed.release()
