"""``nasmed classify`` end to end on a tiny synthetic task, and its bad inputs (exit 2)."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from decathlon.datalist import load_task
from decathlon.io import read_image, write_image
from nasmed.classify.api import MARGIN_SECONDS, ClassifyConfig, prepare_slices
from nasmed.classify.autoaugment.policy import Policy
from nasmed.cli.main import main

TINY = ["--arch", "resnet10", "--width", "4"]


def _run(task: Path, out: Path, budget: float, *extra: str) -> tuple[int, float]:
    start = time.perf_counter()
    rc = main(
        [
            "classify",
            str(task),
            "--out",
            str(out),
            "--time-budget",
            str(budget),
            "--cache-dir",
            str(out.parent / "cache"),
            *TINY,
            *extra,
        ]
    )
    return rc, time.perf_counter() - start


def test_classify_writes_every_file_within_budget(tiny_task: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    budget = 8.0
    rc, elapsed = _run(tiny_task, out, budget, "--autoaugment", "light", "--location", "--distill")
    assert rc == 0
    assert elapsed <= budget + MARGIN_SECONDS
    for name in (
        "predictions.csv",
        "metrics.json",
        "alc.png",
        "policy.json",
        "model.pt",
        "backbone.pt",
        "anytime/index.csv",
    ):
        assert (out / name).is_file(), name
    pngs = list((out / "attention").glob("*.png"))
    assert pngs and all(p.stat().st_size > 0 for p in pngs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["auc_per_class"]) == {"organ1", "lesion"}
    assert 0.0 <= metrics["accuracy"] <= 1.0 and -1.0 <= metrics["alc"] <= 1.0
    assert metrics["anytime"] and metrics["elapsed_seconds"] <= budget + MARGIN_SECONDS
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == metrics["test_slices"] > 0
    assert {"case", "slice", "prob_organ1", "true_lesion"} <= set(rows[0])
    assert not set(r["case"] for r in rows) & set(metrics.get("train_cases", []))
    Policy.load(out / "policy.json")


def test_classify_gap_head_with_full_search(tiny_task: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc, elapsed = _run(tiny_task, out, 6.0, "--head", "gap", "--autoaugment", "full")
    assert rc == 0 and elapsed <= 6.0 + MARGIN_SECONDS
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["head"] == "gap" and metrics["search"]["trials"] > 0
    assert len(Policy.load(out / "policy.json")) > 0


def test_pretrain_on_source_then_mismatched_checkpoint_exits_2(
    tiny_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, elapsed = _run(
        tiny_task, tmp_path / "pre", 6.0, "--pretrain-on", str(tiny_task), "--pretrain-budget", "3"
    )
    assert rc == 0 and elapsed <= 3.0 + 6.0 + 2 * MARGIN_SECONDS
    assert (tmp_path / "pre" / "pretrained_backbone.pt").is_file()
    capsys.readouterr()
    out = tmp_path / "other"
    rc = main(
        [
            "classify",
            str(tiny_task),
            "--out",
            str(out),
            "--time-budget",
            "4",
            "--arch",
            "resnet18",
            "--width",
            "4",
            "--pretrained",
            str(tmp_path / "pre" / "backbone.pt"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "resnet10" in err
    assert not out.exists()


def test_budget_too_small_exits_2(
    tiny_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _ = _run(tiny_task, tmp_path / "run", 1.0)
    assert rc == 2 and "too small" in capsys.readouterr().err


def _relabel(src: Path, dst: Path, keep: set[int]) -> Path:
    shutil.copytree(src, dst)
    for case in load_task(dst).training:
        assert case.label is not None
        lab = read_image(case.label)
        arr = np.where(np.isin(lab.array, list(keep)), lab.array, 0).astype(np.uint8)
        write_image(case.label, arr, lab.geometry)
    return dst


def test_task_without_foreground_exits_2(
    tiny_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = _relabel(tiny_task, tmp_path / "Task92_Empty", keep=set())
    rc, _ = _run(empty, tmp_path / "run", 5.0)
    assert rc == 2 and "no slice shows any foreground" in capsys.readouterr().err


def test_class_never_in_training_warns(
    tiny_task: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task = load_task(_relabel(tiny_task, tmp_path / "Task93_NoLesion", keep={1}))
    with caplog.at_level(logging.WARNING):
        data = prepare_slices(task, ClassifyConfig(time_budget=5.0), None)
    assert any("'lesion' never appears" in w for w in data.warnings)
    assert "never appears" in caplog.text


def test_a_failed_start_does_not_block_a_retry_and_resume_reuses_a_finished_run(
    tiny_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nasmed.rundir import prepare_run_dir, release_run_dir

    out = tmp_path / "run"
    prepare_run_dir(out, "classify", {"head": "saol"}, complete="metrics.json")
    release_run_dir(out)  # what a start that failed after making its run folder leaves
    (out / "alc.png").write_bytes(b"half")
    rc, _ = _run(tiny_task, out, 4.0)  # the same folder, no --resume: a retry is not blocked
    assert rc == 0 and (out / "metrics.json").is_file()
    capsys.readouterr()
    rc, _ = _run(tiny_task, out, 4.0)
    err = capsys.readouterr().err
    assert rc == 2 and "pass --resume" in err  # and classify has that option now
    before = (out / "metrics.json").read_bytes()
    rc, elapsed = _run(tiny_task, out, 4.0, "--resume")
    assert rc == 0 and "already complete" in capsys.readouterr().out
    assert (out / "metrics.json").read_bytes() == before and elapsed < 4.0
    rc, _ = _run(tiny_task, out, 4.0, "--resume", "--head", "gap")
    assert rc == 2 and "cannot resume with head='gap'" in capsys.readouterr().err
