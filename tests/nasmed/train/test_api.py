"""``train()``: the run folder's files, learning an easy task, bad input leaving nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import searchspaces
from decathlon.errors import DatasetError
from nasmed.errors import ConfigError, GenotypeError, RunDirError
from nasmed.evaluate import evaluate
from nasmed.infer import predict
from nasmed.models.spec import load_model
from nasmed.supernet import sample_genotype
from nasmed.train.config import TrainConfig
from nasmed.train.history import read_history
from nasmed.training import train


def test_run_folder_files(trained_unet: Path) -> None:
    run = trained_unet
    for name in ("model.pt", "model.json", "plan.json", "run.json", "history.csv"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.pt").is_file() and (
        run / "checkpoints" / "best.pt"
    ).is_file()
    assert any((run / "tensorboard").iterdir())
    state = torch.load(run / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    spec, net = load_model(run)
    assert spec.arch == "unet" and spec.patch == (32, 32, 16) and not net.training
    assert len(read_history(run / "history.csv")) == 8


def test_easy_task_reaches_a_dice_well_above_chance(
    trained_unet: Path, easy_task: Path, tmp_path: Path
) -> None:
    info = json.loads((trained_unet / "model.json").read_text())["info"]
    assert info["best_val_dice"] > 0.5  # sliding-window Dice on the validation case
    # and on the raw image, through predict + evaluate on the original grid
    ref = tmp_path / "ref"
    ref.mkdir()
    images = []
    for case in info["val_cases"]:
        shutil.copy(easy_task / "labelsTr" / f"{case}.nii.gz", ref)
        images.append(easy_task / "imagesTr" / f"{case}.nii.gz")
    predict(trained_unet, images, tmp_path / "pred", device="cpu", progress=False)
    metrics = evaluate(tmp_path / "pred", ref, labels=[1])
    # 48 steps: 0.47 with nnU-Net's foreground-only Dice, 0.54 with background counted (measured)
    assert metrics["summary"]["1"]["dice_mean"] > 0.4


def test_genotype_trains(easy_task: Path, easy_work: Path, tmp_path: Path) -> None:
    path = tmp_path / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 1).save(path)
    config = TrainConfig(epochs=1, patch=(16, 16, 8), steps_per_epoch=1, folds=4, workers=0)
    run = train(easy_task, path, tmp_path / "run", config, device="cpu", work_dir=easy_work)
    spec, net = load_model(run)
    # deep supervision is on by default for a network that has it
    assert spec.arch == "genotype" and spec.genotype is not None and spec.deep_supervision
    assert net(torch.randn(1, 1, 16, 16, 8)).shape == (1, 2, 16, 16, 8)


def _bad(kind: str, easy_task: Path, tmp_path: Path) -> tuple[dict, type[Exception], str]:
    geno = tmp_path / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 1).save(geno)
    data = json.loads(geno.read_text())
    if kind == "changed_space":
        geno.write_text(json.dumps({**data, "space_hash": "f" * 64}))
        return {"arch": geno}, GenotypeError, "changed since the genotype was made"
    if kind == "patch":
        return {"arch": "unet", "patch": (24, 32, 32)}, ConfigError, "nearest valid patch"
    if kind == "fold":
        return {"arch": "unet", "fold": 7}, ConfigError, "out of range"
    if kind == "task":
        return {"arch": "unet", "task": tmp_path / "nowhere"}, DatasetError, "does not exist"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["changed_space", "patch", "fold", "task"])
def test_bad_input_leaves_nothing(kind: str, easy_task: Path, tmp_path: Path) -> None:
    kw, exc, match = _bad(kind, easy_task, tmp_path)
    task = kw.pop("task", easy_task)
    arch = kw.pop("arch")
    run = tmp_path / "run"
    with pytest.raises(exc, match=match):
        config = TrainConfig(epochs=1, folds=4, workers=0, **kw)
        train(task, arch, run, config, device="cpu", progress=False)
    assert not run.exists()


def test_run_dir_holding_another_run(easy_task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"kind": "search", "settings": {}}')
    with pytest.raises(RunDirError, match="holds a 'search' run"):
        train(easy_task, "unet", run, TrainConfig(epochs=1, folds=4), device="cpu")
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty"):
        train(easy_task, "unet", other, TrainConfig(epochs=1, folds=4), device="cpu")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_default_patch_fits_the_architecture() -> None:
    from dataclasses import replace

    from decathlon.plan import ChannelNorm, Plan
    from nasmed.training import default_patch

    plan = Plan(
        task_name="T",
        modalities=("CT",),
        labels={0: "background", 1: "organ"},
        target_spacing=(1.0, 1.0, 2.0),
        normalization=(ChannelNorm("ct", -100.0, 200.0, 50.0, 30.0),),
        patch_size=(80, 64, 16),
        batch_size=2,
        median_shape_after_resampling=(90, 70, 20),
    )
    small = sample_genotype(searchspaces.load("scnas-small"), 0)  # divisor 8
    big = sample_genotype(searchspaces.load("scnas"), 0)  # divisor 16
    assert default_patch(plan, "unet") == (80, 64, 16)
    assert default_patch(plan, small) == (80, 64, 16)
    assert default_patch(plan, big) == (80, 64, 16)
    assert default_patch(replace(plan, patch_size=(48, 48, 32)), "dynunet") == (48, 48, 32)


def test_dice_score_normalises_validation_results() -> None:
    from nasmed.training import dice_score

    got = dice_score({"dice": 0.5, "per_class": {"1": 0.75, "2": 0.25}})
    assert got == {"dice": 0.5, "dice_1": 0.75, "dice_2": 0.25}
    assert dice_score({"per_class": {"1": 0.2, "2": 0.4}})["dice"] == pytest.approx(0.3)


def test_resume_after_the_last_epoch_writes_the_model(
    easy_task: Path, easy_work: Path, tmp_path: Path
) -> None:
    """Killed between the last checkpoint and model.json: --resume trains nothing and writes a
    complete model.json (its time per epoch from the history, not NaN)."""
    config = TrainConfig(epochs=2, patch=(16, 16, 16), steps_per_epoch=1, folds=4, workers=0)
    run = train(easy_task, "unet", tmp_path / "run", config, device="cpu", work_dir=easy_work)
    before = json.loads((run / "model.json").read_text())["info"]
    (run / "model.json").unlink()
    (run / "model.pt").unlink()
    train(easy_task, "unet", run, config, resume=True, device="cpu", work_dir=easy_work)
    info = json.loads((run / "model.json").read_text())["info"]
    assert info["epochs"] == 2 and len(read_history(run / "history.csv")) == 2
    assert info["seconds_per_epoch"] == pytest.approx(before["seconds_per_epoch"])
    assert info["final_val_dice"] == pytest.approx(before["final_val_dice"])
    assert (run / "model.pt").is_file()
