from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from decathlon.testing import write_task
from nasmed.errors import RunDirError
from nasmed.rundir import (
    HISTORY_FILE,
    LOCK_FILE,
    RUN_FILE,
    prepare_run_dir,
    read_run_info,
    release_run_dir,
    task_hash,
)


def _progress(run: Path) -> None:
    """What a run that finished an epoch has: a history (and a checkpoint)."""
    (run / HISTORY_FILE).write_text("epoch\n0\n")
    (run / "ckpt.pt").write_bytes(b"x")


def test_new_run_writes_run_json(tmp_path: Path) -> None:
    run, resumed = prepare_run_dir(tmp_path / "run", "search", {"seed": 1})
    assert not resumed
    info = json.loads((run / RUN_FILE).read_text())
    assert info["kind"] == "search" and info["settings"] == {"seed": 1}
    assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())
    release_run_dir(run)


def test_refuses_existing_run_without_resume(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path, "search", {"seed": 1}, checkpoint="ckpt.pt")
    _progress(tmp_path)
    with pytest.raises(RunDirError, match="--resume"):
        prepare_run_dir(tmp_path, "search", {"seed": 1}, checkpoint="ckpt.pt")
    release_run_dir(tmp_path)


def test_a_start_that_never_finished_an_epoch_does_not_block_a_retry(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path, "classify", {"seed": 1}, complete="metrics.json")
    (tmp_path / "half.txt").write_text("left by a failed start")
    run, resumed = prepare_run_dir(tmp_path, "classify", {"seed": 2}, complete="metrics.json")
    assert not resumed and not (run / "half.txt").exists()
    assert read_run_info(run)["settings"] == {"seed": 2}  # type: ignore[index]
    release_run_dir(run)


def test_resume_checks_immutable_settings(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path, "search", {"seed": 1, "epochs": 2})
    _progress(tmp_path)
    _, resumed = prepare_run_dir(
        tmp_path, "search", {"seed": 1, "epochs": 4}, resume=True, immutable=("seed",)
    )
    assert resumed
    with pytest.raises(RunDirError, match="seed=2"):
        prepare_run_dir(tmp_path, "search", {"seed": 2}, resume=True, immutable=("seed",))
    release_run_dir(tmp_path)


def test_refuses_other_kind_and_foreign_folder_and_file(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path / "a", "train", {})
    with pytest.raises(RunDirError, match="'train' run"):
        prepare_run_dir(tmp_path / "a", "search", {}, resume=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("x")
    with pytest.raises(RunDirError, match="not empty"):
        prepare_run_dir(tmp_path / "b", "search", {})
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["x.txt"]  # no lock left
    (tmp_path / "c").write_text("file")
    with pytest.raises(RunDirError, match="is a file"):
        prepare_run_dir(tmp_path / "c", "search", {})
    assert read_run_info(tmp_path / "b") is None
    release_run_dir(tmp_path / "a")


def test_missing_checkpoint_on_resume_is_an_error(tmp_path: Path) -> None:
    prepare_run_dir(tmp_path, "train", {}, checkpoint="ckpt.pt", complete="model.json")
    _progress(tmp_path)
    (tmp_path / "ckpt.pt").unlink()
    with pytest.raises(RunDirError, match=r"ckpt.pt: checkpoint missing.*epoch 0"):
        prepare_run_dir(
            tmp_path, "train", {}, resume=True, checkpoint="ckpt.pt", complete="model.json"
        )
    (tmp_path / "model.json").write_text("{}")  # a finished run needs no checkpoint
    _, resumed = prepare_run_dir(
        tmp_path, "train", {}, resume=True, checkpoint="ckpt.pt", complete="model.json"
    )
    assert resumed
    release_run_dir(tmp_path)


def test_resume_refuses_a_changed_task(tmp_path: Path) -> None:
    task = write_task(tmp_path / "task", cases=3)
    run = tmp_path / "run"
    before = task_hash(task)
    prepare_run_dir(run, "train", {}, task_root=task)
    _progress(run)
    assert prepare_run_dir(run, "train", {}, task_root=task, resume=True)[1]
    data = json.loads((task / "dataset.json").read_text())
    data["training"] = data["training"][:2]
    (task / "dataset.json").write_text(json.dumps(data))
    assert task_hash(task) != before
    with pytest.raises(RunDirError, match=r"task .* changed since the run started"):
        prepare_run_dir(run, "train", {}, task_root=task, resume=True)
    release_run_dir(run)


def test_settings_that_cannot_be_recorded_are_refused_before_anything(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"not a finite number|cannot be recorded"):
        prepare_run_dir(tmp_path / "run", "train", {"lr": float("nan")})
    assert not (tmp_path / "run").exists()


def test_run_folder_may_not_overlap_its_inputs(tmp_path: Path) -> None:
    task = write_task(tmp_path / "task", cases=2)
    for out in (task, task / "run", tmp_path):
        with pytest.raises(RunDirError, match=r"--out (is|contains|is inside) the input"):
            prepare_run_dir(out, "train", {}, inputs=(task,))
    assert not (task / "run").exists()


_HOLDER = """
import sys, time
from nasmed.rundir import prepare_run_dir
prepare_run_dir(sys.argv[1], "train", {{}})
print("locked", flush=True)
time.sleep(60)
"""


def _start_holder(run: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER.format(), str(run)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_start_or_resume_is_refused_naming_the_pid(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start_holder(run)
    try:
        for resume in (False, True):
            with pytest.raises(
                RunDirError, match=f"in use by another nasmed process \\(pid {proc.pid}\\)"
            ):
                prepare_run_dir(run, "train", {}, resume=resume)
        # kill -9 leaves no stale lock: the kernel drops it with the process
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while True:
            try:
                prepare_run_dir(run, "train", {})
                break
            except RunDirError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())
        release_run_dir(run)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
