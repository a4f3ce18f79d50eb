"""``nasmed train / predict / evaluate / transfer``: the main path, and bad input exits 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import searchspaces
from decathlon.io import Geometry, write_image
from nasmed.cli.main import main
from nasmed.supernet import sample_genotype


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_train_predict_evaluate(
    easy_task: Path, easy_work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    common = ["--device", "cpu", "-q"]
    args = [
        "train",
        str(easy_task),
        "--arch",
        "unet",
        "--out",
        str(run),
        "--epochs",
        "1",
        "--steps",
        "2",
        "--patch",
        "32",
        "32",
        "16",
        "--width",
        "0.25",
        "--folds",
        "4",
        "--work-dir",
        str(easy_work),
        "--workers",
        "0",
        *common,
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best validation Dice" in out and str(run / "model.pt") in out
    assert main(args) == 2  # the folder now holds that run
    assert "pass --resume" in _err(capsys)
    assert main([*args, "--resume"]) == 0
    capsys.readouterr()

    info = json.loads((run / "model.json").read_text())["info"]
    ref = tmp_path / "ref"
    ref.mkdir()
    for case in info["val_cases"]:
        shutil.copy(easy_task / "labelsTr" / f"{case}.nii.gz", ref)
    pred = tmp_path / "pred"
    inputs = [str(easy_task / "imagesTr" / f"{c}.nii.gz") for c in info["val_cases"]]
    assert main(["predict", "--model", str(run), *inputs, "--out", str(pred), *common]) == 0
    assert f"wrote {len(inputs)} segmentation(s)" in capsys.readouterr().out
    assert (
        main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--nsd-tolerance", "1=2.0", "-q"])
        == 0
    )
    out = capsys.readouterr().out
    assert "Dice" in out and "HD95" in out and "NSD" in out
    assert (pred / "metrics.json").is_file() and (pred / "metrics.csv").is_file()
    # --amp (bfloat16 on CPU) and --amp-dtype fp16 (CUDA only: one line, exit 2)
    amp = ["predict", "--model", str(run), *inputs, *common, "--amp", "--out"]
    assert main([*amp, str(tmp_path / "pred_amp")]) == 0
    assert len(list((tmp_path / "pred_amp").glob("*.nii.gz"))) == len(inputs)
    capsys.readouterr()
    assert main([*amp, str(tmp_path / "pred16"), "--amp-dtype", "fp16"]) == 2
    assert "fp16 needs a CUDA device" in _err(capsys)


def test_bad_input_exits_2(
    trained_unet: Path, easy_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    geno = tmp_path / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 0).save(geno)
    data = json.loads(geno.read_text())
    geno.write_text(json.dumps({**data, "space_hash": "a" * 64}))
    run = tmp_path / "run"
    assert (
        main(["train", str(easy_task), "--arch", str(geno), "--out", str(run), "--device", "cpu"])
        == 2
    )
    assert "changed since the genotype was made" in _err(capsys)
    assert not run.exists()

    other = geno.with_name("other.json")
    other.write_text(json.dumps({**data, "space": "scnas-shared"}))
    assert (
        main(["train", str(easy_task), "--arch", str(other), "--out", str(run), "--device", "cpu"])
        == 2
    )
    assert "scnas-shared" in _err(capsys)
    assert not run.exists()

    image = np.zeros((3, 24, 24, 16), np.float32)
    three = write_image(tmp_path / "three.nii.gz", image, Geometry(np.eye(4), (24, 24, 16)))
    pred = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained_unet),
                str(three),
                "--out",
                str(pred),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "three.nii.gz: 3 channel(s), but the model was trained on 1" in _err(capsys)
    assert not pred.exists()

    assert main(["predict", "--model", str(tmp_path), str(three), "--out", str(pred)]) == 2
    assert "model file not found" in _err(capsys)

    assert main(["evaluate", "--pred", str(tmp_path / "nope"), "--ref", str(tmp_path)]) == 2
    assert "does not exist" in _err(capsys)


@pytest.mark.parametrize("kind", ["missing_pred", "extra_pred", "shape", "affine"])
def test_evaluate_bad_files_exit_2(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    blob = np.zeros((8, 8, 8), np.uint8)
    blob[2:5, 2:5, 2:5] = 1
    g = Geometry(np.eye(4), (8, 8, 8))
    write_image(ref / "a.nii.gz", blob, g)
    write_image(pred / "a.nii.gz", blob, g)
    match = {
        "missing_pred": "no prediction for this case",
        "extra_pred": "no reference for this case",
        "shape": "differs from the reference's",
        "affine": "affine differs",
    }[kind]
    if kind == "missing_pred":
        write_image(ref / "b.nii.gz", blob, g)
    elif kind == "extra_pred":
        write_image(pred / "b.nii.gz", blob, g)
    elif kind == "shape":
        write_image(pred / "a.nii.gz", blob[:, :, :6], Geometry(np.eye(4), (8, 8, 6)))
    else:
        shifted = np.eye(4)
        shifted[1, 3] = 2.0
        write_image(pred / "a.nii.gz", blob, Geometry(shifted, (8, 8, 8)))
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out)]) == 2
    assert match in _err(capsys)
    assert not out.exists() and not out.with_suffix(".csv").exists()


@pytest.mark.parametrize(
    ("option", "match"),
    [
        (["--time-budget", "nan"], "--time-budget"),
        (["--time-budget", "inf"], "--time-budget"),
        (["--time-budget", "0"], "--time-budget"),
        (["--momentum", "1.5"], "--momentum"),
        (["--grad-clip", "-1"], "--grad-clip"),
        (["--elastic", "2"], "elastic"),
    ],
)
def test_training_options_are_checked_in_one_line(
    option: list[str],
    match: str,
    easy_task: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    args = ["train", str(easy_task), "--arch", "unet", "--out", str(run), *option, "-q"]
    assert main(args) == 2
    assert match in _err(capsys)
    assert not run.exists()


def test_cli_builds_the_config_with_every_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from nasmed.train.config import TrainConfig

    seen: list[TrainConfig] = []

    def fake_train(task: str, arch: str, out: str, config: TrainConfig, **kw: object) -> Path:
        seen.append(config)
        raise SystemExit(0)

    monkeypatch.setattr("nasmed.training.train", fake_train)
    options = "--amp --weight-decay 0.001 --momentum 0.9 --poly-exponent 1.0 --grad-clip 5"
    options += " --time-budget 60 --augment-off mirror gamma --elastic 0.2 --no-deep-supervision"
    options += " --no-postprocess --amp-dtype bf16 --activation-checkpointing"
    with pytest.raises(SystemExit):
        main(["train", "T", "--arch", "dynunet", "--out", "R", *options.split()])
    c = seen[0]
    assert (c.amp, c.weight_decay, c.momentum, c.poly_exponent, c.grad_clip) == (
        True,
        0.001,
        0.9,
        1.0,
        5.0,
    )
    assert c.time_budget == 60.0 and c.deep_supervision is False and not c.postprocess
    assert c.augment.mirror == 0 and c.augment.gamma == 0 and c.augment.elastic == 0.2
    assert c.augment.noise == 0.1 and c.workers == TrainConfig().workers
    assert c.amp_dtype == "bf16" and c.activation_checkpointing is True
