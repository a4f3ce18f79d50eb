"""Small tasks (issue 15): a valid 4-case task preprocesses and trains with the default folds;
``--fold all`` trains a task too small to hold any case out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decathlon.splits import load_splits
from decathlon.synthetic import write_synthetic_task
from nasmed.cli.main import main

QUICK = ["--epochs", "1", "--steps", "1", "--patch", "32", "32", "16", "--width", "0.25"]


def test_four_cases_preprocess_and_train_with_default_folds(
    easy_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    assert main(["preprocess", str(easy_task), "--out", str(work), "--workers", "1"]) == 0
    assert "fewer than the default 5 folds: using 4 folds" in capsys.readouterr().err
    assert len(load_splits(work / "splits.json")) == 4
    run = tmp_path / "run"
    argv = ["train", str(easy_task), "--arch", "unet", "--out", str(run), *QUICK]
    assert main([*argv, "--work-dir", str(work), "--workers", "0", "--device", "cpu"]) == 0
    info = json.loads((run / "model.json").read_text())["info"]
    assert len(info["train_cases"]) == 3 and len(info["val_cases"]) == 1
    assert json.loads((run / "run.json").read_text())["split"]["val"] == info["val_cases"]


def test_fold_all_trains_a_one_case_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    task = write_synthetic_task(tmp_path / "one", cases=1, shape=(32, 32, 24), test_cases=0)
    run = tmp_path / "run"
    argv = ["train", str(task), "--arch", "unet", "--out", str(run), *QUICK, "--device", "cpu"]
    assert main(argv) == 2
    assert "use --fold all" in capsys.readouterr().err
    assert not run.exists()
    assert main([*argv, "--fold", "all", "--workers", "0"]) == 0
    info = json.loads((run / "model.json").read_text())["info"]
    assert info["fold"] == "all" and info["train_cases"] == info["val_cases"] == ["synth_000"]
