"""Misuse battery, outputs half (issue 15): every case exits 2 with one line on stderr, no
traceback, and leaves every file that existed before unchanged.

The CLI runs in-process (:func:`nasmed.cli.main.main`); only the concurrent-start case needs a
second process (the holder of the run's lock).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import searchspaces
from decathlon.io import Geometry, write_image
from decathlon.outputs import is_bookkeeping
from decathlon.synthetic import write_synthetic_task
from decathlon.testing import write_task
from nasmed.cli.main import main
from nasmed.supernet import sample_genotype

EASY = ["--folds", "4", "--device", "cpu", "-q"]


def _tree(*roots: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], roots: list[Path], match: str
) -> str:
    """Run ``argv``; assert exit 2, one stderr line matching ``match``, and no file changed."""
    before = _tree(*roots)
    capsys.readouterr()
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert match in err, err
    after = _tree(*roots)
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"changed or removed: {changed}"
    new = [p for p in after if p not in before and not is_bookkeeping(Path(p))]
    assert not new, f"written: {new}"
    return err


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated 3-case task."""
    return write_task(tmp_path_factory.mktemp("small") / "Small", cases=3)


@pytest.fixture
def genotype(tmp_path: Path) -> Path:
    path = tmp_path / "geno" / "genotype.json"
    path.parent.mkdir()
    sample_genotype(searchspaces.load("scnas-small"), 0).save(path)
    return path


@pytest.fixture
def labels(easy_task: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A prediction folder and a reference folder (copies of the easy task's labels)."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    shutil.copytree(easy_task / "labelsTr", pred)
    shutil.copytree(easy_task / "labelsTr", ref)
    return pred, ref


def _fake_run(trained_unet: Path, tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of a train run's run.json that made progress (history) but holds no model."""
    run = tmp_path / "copied_run"
    run.mkdir()
    info = json.loads((trained_unet / "run.json").read_text())
    edit(info)
    (run / "run.json").write_text(json.dumps(info))
    shutil.copy(trained_unet / "history.csv", run / "history.csv")
    return run


def _train_args(task: Path, run: Path) -> list[object]:
    """The CLI spelling of the ``trained_unet`` fixture's settings."""
    return [
        "train", task, "--arch", "unet", "--out", run, "--epochs", "8", "--patch", "32", "32",
        "16", "--steps", "6", "--width", "0.5", "--optimizer", "adamw", "--lr", "3e-3",
        "--val-every", "4", *EASY,
    ]  # fmt: skip


# ---- predict ----------------------------------------------------------------------------------


def test_predict_into_its_input_folder(easy_task, trained_unet, capsys) -> None:
    imgs = easy_task / "imagesTs"
    argv = ["predict", "--model", trained_unet, imgs, "--out", imgs, "--device", "cpu", "-q"]
    _refused(capsys, argv, [easy_task, trained_unet], "--out is the input")


def test_predict_over_the_ground_truth(easy_task, trained_unet, capsys) -> None:
    argv = [
        "predict", "--model", trained_unet, easy_task / "imagesTr", "--out",
        easy_task / "labelsTr", "--device", "cpu", "-q",
    ]  # fmt: skip
    _refused(capsys, argv, [easy_task], "is inside the task folder's labelsTr")


def test_predict_test_images_into_the_ground_truth_folder(easy_task, trained_unet, capsys):
    """No file would be replaced (other names), but label maps would join the ground truth."""
    argv = [
        "predict", "--model", trained_unet, easy_task / "imagesTs", "--out",
        easy_task / "labelsTr", "--device", "cpu", "-q",
    ]  # fmt: skip
    _refused(capsys, argv, [easy_task], "is inside the task folder's labelsTr")


def test_predict_into_the_model_folder(easy_task, trained_unet, capsys) -> None:
    argv = ["predict", "--model", trained_unet, easy_task / "imagesTs", "--out", trained_unet]
    _refused(capsys, [*argv, "-q"], [trained_unet], "--out is the input")


def test_predict_into_a_folder_above_its_inputs(easy_task, trained_unet, capsys) -> None:
    argv = ["predict", "--model", trained_unet, easy_task / "imagesTs", "--out", easy_task, "-q"]
    _refused(capsys, argv, [easy_task], "--out contains the input")


def test_predict_over_a_users_file_of_the_same_name(easy_task, trained_unet, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    name = next((easy_task / "imagesTs").iterdir()).name
    (out / name).write_bytes(b"my own segmentation")
    argv = ["predict", "--model", trained_unet, easy_task / "imagesTs", "--out", out, "-q"]
    _refused(capsys, argv, [out], "was not written by nasmed predict")


# ---- preprocess -------------------------------------------------------------------------------


def test_preprocess_another_task_into_a_train_run(small, trained_unet, capsys) -> None:
    argv = ["preprocess", small, "--out", trained_unet, "--workers", "1", "-q"]
    _refused(capsys, argv, [trained_unet], "written by nasmed train, not by nasmed preprocess")


def test_preprocess_another_task_into_a_work_folder(small, easy_work, trained_unet, capsys):
    argv = ["preprocess", small, "--out", easy_work, "--workers", "1", "-q"]
    _refused(capsys, argv, [easy_work], "output of nasmed preprocess for")


def test_preprocess_into_the_task_folder(small, capsys) -> None:
    _refused(capsys, ["preprocess", small, "--out", small / "work"], [small], "inside the input")


def test_preprocess_into_a_foreign_folder(small, tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    argv = ["preprocess", small, "--out", tmp_path, "-q"]
    _refused(capsys, argv, [tmp_path], "something other than nasmed")


# ---- run folders: train, transfer, search, classify -----------------------------------------


def test_train_run_inside_the_task(small, capsys) -> None:
    argv = ["train", small, "--arch", "unet", "--out", small / "run", "--folds", "3", "-q"]
    _refused(capsys, argv, [small], "--out is inside the input")


def test_train_into_the_genotypes_folder(small, genotype, capsys) -> None:
    argv = ["train", small, "--arch", genotype, "--out", genotype.parent, "--folds", "3"]
    _refused(capsys, [*argv, "-q"], [genotype.parent], "--out contains the input")


def test_transfer_into_a_foreign_folder(small, tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    argv = ["transfer", small, "--arch", "unet", "--out", tmp_path, "--folds", "3", "-q"]
    _refused(capsys, argv, [tmp_path], "holds no run.json")


def test_search_run_inside_the_task(small, capsys) -> None:
    argv = ["search", small, "--out", small / "s", "--device", "cpu", "-q"]
    _refused(capsys, argv, [small], "--out is inside the input")


def test_classify_run_inside_the_task(small, capsys) -> None:
    argv = ["classify", small, "--out", small / "c", "--time-budget", "5", "--device", "cpu"]
    _refused(capsys, [*argv, "-q"], [small], "--out is inside the input")


def test_train_a_genotype_holding_nan_is_refused_before_training(small, genotype, tmp_path, capsys):
    data = json.loads(genotype.read_text())
    data["search"] = {"final_val_dice": math.nan}
    genotype.write_text(json.dumps(data))  # json writes NaN
    run = tmp_path / "run"
    argv = ["train", small, "--arch", genotype, "--out", run, "--folds", "3", "-q"]
    _refused(capsys, argv, [small, genotype], "NaN or infinite value")
    assert not run.exists()


def test_resume_with_the_checkpoint_missing(easy_task, trained_unet, tmp_path, capsys) -> None:
    run = _fake_run(trained_unet, tmp_path, lambda info: None)
    argv = [*_train_args(easy_task, run), "--resume"]
    _refused(capsys, argv, [run, easy_task], "checkpoint missing")


def test_resume_after_the_task_changed(easy_task, trained_unet, tmp_path, capsys) -> None:
    run = _fake_run(trained_unet, tmp_path, lambda info: info.update(task_hash="0" * 64))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    argv = [*_train_args(easy_task, run), "--resume"]
    _refused(capsys, argv, [run, easy_task], "changed since the run started")


def test_a_second_start_while_a_run_holds_the_folder(small, tmp_path, capsys) -> None:
    run = tmp_path / "busy"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom nasmed.rundir import prepare_run_dir\n"
            "prepare_run_dir(sys.argv[1], 'train', {})\nprint('locked', flush=True)\n"
            "time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--resume"]):
            argv = ["train", small, "--arch", "unet", "--out", run, *extra, "--folds", "3"]
            _refused(capsys, [*argv, "-q"], [run], f"(pid {holder.pid})")
    finally:
        holder.kill()
        holder.wait()


def test_train_a_task_listing_files_outside_it(small, tmp_path, capsys) -> None:
    task = tmp_path / "task"
    shutil.copytree(small, task)
    data = json.loads((task / "dataset.json").read_text())
    data["training"][0]["image"] = str(small / "imagesTr" / "case_0.nii.gz")
    (task / "dataset.json").write_text(json.dumps(data))
    argv = ["train", task, "--arch", "unet", "--out", tmp_path / "run", "--folds", "3", "-q"]
    _refused(capsys, argv, [task, small], "--allow-outside-paths")
    assert not (tmp_path / "run").exists()


# ---- evaluate, demo, synth, show, inspect -----------------------------------------------------


def test_evaluate_writing_into_the_references(labels, capsys) -> None:
    pred, ref = labels
    argv = ["evaluate", "--pred", pred, "--ref", ref, "--out", ref / "metrics.json", "-q"]
    _refused(capsys, argv, [pred, ref], "--out is inside the input")


def test_evaluate_over_a_users_file(labels, tmp_path, capsys) -> None:
    pred, ref = labels
    mine = tmp_path / "report.json"
    mine.write_text('{"mine": true}')
    argv = ["evaluate", "--pred", pred, "--ref", ref, "--out", mine, "-q"]
    _refused(capsys, argv, [pred, ref, mine], "was not written by nasmed evaluate")


def test_demo_over_a_folder_of_other_results(labels, tmp_path, capsys) -> None:
    d = tmp_path / "d"
    (d / "reference").mkdir(parents=True)
    (d / "metrics.json").write_text("{}")
    (d / "metrics.csv").write_text("case\n")
    (d / "reference" / "x.nii.gz").write_bytes(b"x")
    _refused(capsys, ["demo", "--out", d, "-q"], [d], "refusing to overwrite them")


def test_synth_overwrite_of_a_real_task(small, capsys) -> None:
    argv = ["synth", small, "--overwrite", "--cases", "2", "--shape", "8", "8", "8", "-q"]
    _refused(capsys, argv, [small], "not by nasmed synth")


def test_show_png_over_a_users_file_and_over_the_genotype(genotype, tmp_path, capsys) -> None:
    png = tmp_path / "figure.png"
    png.write_bytes(b"my figure")
    _refused(capsys, ["show", genotype, "--png", png], [png, genotype], "nasmed show")
    _refused(capsys, ["show", genotype, "--png", genotype], [genotype], "--png is the input")


def test_inspect_png_inside_the_task(small, capsys) -> None:
    argv = ["inspect", small, "--png", small / "case.png"]
    _refused(capsys, argv, [small], "--png is inside the input")


# ---- and what the rule allows ----------------------------------------------------------------


def test_reruns_replace_their_own_outputs(easy_task, trained_unet, tmp_path, capsys) -> None:
    out = tmp_path / "pred"
    argv = ["predict", "--model", trained_unet, easy_task / "imagesTs", "--out", out, "-q"]
    argv = [str(a) for a in [*argv, "--device", "cpu"]]
    assert main(argv) == 0
    assert main(argv) == 0  # its own predictions: replaced
    geometry = Geometry(np.eye(4), (8, 8, 8))
    write_image(out / "user.nii.gz", np.zeros((1, 8, 8, 8), np.uint8), geometry)
    ref = tmp_path / "ref"
    shutil.copytree(out, ref, ignore=shutil.ignore_patterns("user*", ".nasmed*"))
    (out / "user.nii.gz").unlink()
    ev = ["evaluate", "--pred", str(out), "--ref", str(ref), "-q"]
    assert main(ev) == 0 and main(ev) == 0  # metrics.json beside the predictions, twice
    assert json.loads((out / "metrics.json").read_text())["summary"]
    capsys.readouterr()


def test_synth_overwrite_of_its_own_task(tmp_path: Path) -> None:
    task = write_synthetic_task(tmp_path / "t", cases=2, shape=(8, 8, 8), test_cases=0)
    argv = ["synth", str(task), "--overwrite", "--cases", "3", "--shape", "8", "8", "8", "-q"]
    assert main(argv) == 0
    assert len(json.loads((task / "dataset.json").read_text())["training"]) == 3
