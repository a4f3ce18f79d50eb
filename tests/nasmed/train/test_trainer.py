"""The fit loop: kill and resume equals an uninterrupted run; settings; poly decay; freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from decathlon.synthetic import write_synthetic_task
from nasmed.errors import ConfigError
from nasmed.train.checkpoint import load_checkpoint
from nasmed.train.config import foreground_fraction, nnunet_batch_dice
from nasmed.train.history import read_history
from nasmed.train.losses import make_seg_loss
from nasmed.train.trainer import TrainConfig
from nasmed.training import train

PATCH = (16, 16, 16)


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_task(
        tmp_path_factory.mktemp("tiny") / "task",
        cases=3,
        shape=(24, 24, 16),
        classes=2,
        test_cases=0,
    )


RUNTIME = ("resume", "on_epoch_end")  # train() arguments, not settings


def _run(task: Path, run: Path, work: Path, **kw: object) -> Path:
    settings: dict[str, object] = dict(
        epochs=3, patch=PATCH, steps_per_epoch=2, width=0.25, val_every=2, folds=3, seed=7
    )
    settings.update({k: v for k, v in kw.items() if k not in RUNTIME})
    config = TrainConfig(**settings)  # type: ignore[arg-type]
    runtime = {k: v for k, v in kw.items() if k in RUNTIME}
    return train(task, "unet", run, config, device="cpu", work_dir=work, progress=False, **runtime)  # type: ignore[arg-type]


def _drop_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_kill_and_resume_equals_uninterrupted(tiny_task: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    full = _run(tiny_task, tmp_path / "full", work)

    def kill(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_task, killed, work, on_epoch_end=kill)
    assert not (killed / "model.pt").exists() and not (killed / "model.json").exists()
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["epoch"] == 2
    assert len(read_history(killed / "history.csv")) == 2
    _run(tiny_task, killed, work, resume=True)

    a = torch.load(full / "model.pt", weights_only=True)
    b = torch.load(killed / "model.pt", weights_only=True)
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ha, hb = read_history(full / "history.csv"), read_history(killed / "history.csv")
    assert [r["epoch"] for r in hb] == [0, 1, 2]
    assert _drop_time(ha) == _drop_time(hb)
    assert "val_dice" in ha[1] and ha[0].get("val_dice") is None  # every 2 epochs and the last


def test_resume_refuses_changed_settings(tiny_task: Path, tmp_path: Path) -> None:
    from nasmed.errors import RunDirError

    run = _run(tiny_task, tmp_path / "run", tmp_path / "work", epochs=1)
    with pytest.raises(RunDirError, match="already holds a train run"):
        _run(tiny_task, run, tmp_path / "work", epochs=1)
    with pytest.raises(RunDirError, match="cannot resume with lr"):
        _run(tiny_task, run, tmp_path / "work", epochs=1, lr=0.5, resume=True)
    before = (run / "model.pt").stat().st_mtime_ns
    _run(tiny_task, run, tmp_path / "work", epochs=1, resume=True)  # complete: nothing to do
    assert (run / "model.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"optimizer": "rmsprop"}, "sgd or adamw"),
        ({"lr": -1.0}, "--lr"),
        ({"batch_size": 0}, "--batch"),
        ({"val_every": 0}, "--val-every"),
    ],
)
def test_config_is_checked(kw: dict, match: str) -> None:
    settings = {"epochs": 2, "patch": PATCH, **kw}
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**settings)  # type: ignore[arg-type]


def test_poly_learning_rate(tiny_task: Path, tmp_path: Path) -> None:
    run = _run(tiny_task, tmp_path / "run", tmp_path / "work", epochs=3, lr=0.02)
    lrs = [r["lr"] for r in read_history(run / "history.csv")]
    assert lrs[0] == pytest.approx(0.02)
    assert lrs[1] == pytest.approx(0.02 * (2 / 3) ** 0.9)
    assert lrs[2] == pytest.approx(0.02 * (1 / 3) ** 0.9)
    assert (run / "tensorboard").is_dir() and (run / "checkpoints" / "best.pt").is_file()


def test_time_budget_stops_validated_with_a_best_checkpoint(
    tiny_task: Path, tmp_path: Path
) -> None:
    import json
    import time

    def slow(epoch: int, row: dict) -> None:
        time.sleep(0.6)  # every epoch takes > 0.6 s, so a 0.5 s budget ends after one or two

    run = _run(
        tiny_task,
        tmp_path / "run",
        tmp_path / "work",
        epochs=6,
        val_every=10,
        time_budget=0.5,
        on_epoch_end=slow,
    )
    info = json.loads((run / "model.json").read_text())["info"]
    rows = read_history(run / "history.csv")
    assert info["stopped_by_time_budget"] and info["epochs"] == len(rows) < 6
    assert info["epochs_planned"] == 6
    assert rows[-1].get("val_dice") is not None  # the last epoch was validated
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == len(rows) - 1
    assert rows[-1]["lr"] < 0.01 * (1 - (len(rows) - 1) / 6) ** 0.9  # time-aware poly decay


@pytest.mark.parametrize("budget", [0.0, -3.0, float("inf"), float("nan")])
def test_time_budget_is_checked(budget: float) -> None:
    from nasmed.search.config import SearchConfig

    with pytest.raises(ConfigError, match="--time-budget"):
        TrainConfig(time_budget=budget)
    with pytest.raises(ConfigError, match="--time-budget"):
        SearchConfig(time_budget=budget)


def test_model_json_records_the_recipe(tiny_task: Path, tmp_path: Path) -> None:
    import json

    from nasmed.train.augment import AugmentConfig

    run = _run(tiny_task, tmp_path / "a", tmp_path / "work", epochs=1)
    recipe = json.loads((run / "model.json").read_text())["info"]["recipe"]
    assert recipe["augment"] == AugmentConfig().to_json()
    assert recipe["deep_supervision"] is False  # unet has none
    assert recipe["weight_decay"] == 3e-5 and recipe["momentum"] == 0.99
    # 16^3 patches of ~24x24x16 images: nnU-Net's per-patch Dice, 1 of 2 patches on foreground
    assert recipe["batch_dice"] is False and recipe["foreground_fraction"] == 0.5
    assert recipe["postprocessing"] == json.loads((run / "postprocessing.json").read_text())
    off = _run(
        tiny_task,
        tmp_path / "b",
        tmp_path / "work",
        epochs=1,
        augment=AugmentConfig.off(),
        postprocess=False,
    )
    recipe = json.loads((off / "model.json").read_text())["info"]["recipe"]
    assert recipe["augment"] is None and recipe["postprocessing"] is None
    assert not (off / "postprocessing.json").exists()


def _to_old_layout(path: Path) -> None:
    """Rewrite a checkpoint as nasmed wrote it before the versioned schema."""
    state = torch.load(path, weights_only=True)
    for key in ("schema", "version", "kind", "final_dice"):
        state.pop(key)
    torch.save(state, path)


def test_an_old_run_folder_still_resumes(tiny_task: Path, tmp_path: Path) -> None:
    """A run killed before the schema existed (old last.pt, run.json without the new settings)
    resumes and ends as an uninterrupted run."""
    import json

    work = tmp_path / "work"
    full = _run(tiny_task, tmp_path / "full", work)

    def kill(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    old = tmp_path / "old"
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_task, old, work, on_epoch_end=kill)
    _to_old_layout(old / "checkpoints" / "last.pt")
    info = json.loads((old / "run.json").read_text())
    for key in TrainConfig.ADDED_SETTINGS:
        del info["settings"][key]
    (old / "run.json").write_text(json.dumps(info))
    _run(tiny_task, old, work, resume=True)
    a = torch.load(full / "model.pt", weights_only=True)
    b = torch.load(old / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = torch.load(old / "checkpoints" / "last.pt", weights_only=True)
    assert (state["schema"], state["kind"], state["epoch"]) == ("nasmed.checkpoint", "train", 3)


def test_a_newer_checkpoint_is_refused_in_one_line(
    tiny_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nasmed.cli.main import main

    work = tmp_path / "work"

    def kill(epoch: int, row: dict) -> None:
        raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_task, run, work, on_epoch_end=kill)
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    torch.save({**state, "version": 99}, last)
    args = ["train", str(tiny_task), "--arch", "unet", "--out", str(run), "--epochs", "3",
            "--steps", "2", "--folds", "3", "--patch", "16", "16", "16", "--width", "0.25",
            "--val-every", "2", "--seed", "7", "--device", "cpu", "--work-dir", str(work),
            "--resume", "-q"]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert (
        len(err) == 1 and "last.pt: checkpoint version 99 was written by a newer nasmed" in err[0]
    )


def test_amp_and_activation_checkpointing_switches_train_on_cpu(
    tiny_task: Path, tmp_path: Path
) -> None:
    run = _run(
        tiny_task,
        tmp_path / "bf16",
        tmp_path / "work",
        epochs=1,
        amp=True,
        activation_checkpointing=True,
    )
    rows = read_history(run / "history.csv")
    assert len(rows) == 1 and rows[0]["loss"] > 0
    assert torch.load(run / "model.pt", weights_only=True)  # a plain state dict, weights only


def test_foreground_oversampling_is_nnunets_per_batch_rule() -> None:
    # nnU-Net forces sample i unless i < round(batch * 0.67): 1 of 2, 1 of 3, 1 of 4, 0 of 1
    assert [foreground_fraction(b) for b in (1, 2, 3, 4, 6)] == pytest.approx(
        [0.0, 0.5, 1 / 3, 0.25, 2 / 6]
    )


def test_batch_dice_only_where_nnunet_would_plan_a_lowres_configuration() -> None:
    assert nnunet_batch_dice((48, 48, 32), (48, 48, 32)) is False
    assert nnunet_batch_dice((128, 128, 128), (512, 512, 300)) is True
    assert nnunet_batch_dice((64, 64, 32), (128, 128, 64)) is True  # 1/8 of the image
    assert nnunet_batch_dice((64, 64, 64), (100, 100, 100)) is False  # 26 %
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 2, 4, 4, 4, generator=g)
    label = torch.zeros(2, 1, 4, 4, 4, dtype=torch.long)
    label[0, :, :2] = 1  # foreground in the first patch only
    assert not torch.isclose(
        make_seg_loss(batch=True)(logits, label), make_seg_loss(batch=False)(logits, label)
    )


def test_trainer_draws_nnunets_foreground_share(
    tiny_task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nasmed.train.trainer as trainer_module

    seen: list[float] = []
    real = trainer_module.make_loader

    def spy(*args: object, **kw: object) -> object:
        seen.append(kw["foreground_fraction"])  # type: ignore[arg-type]
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer_module, "make_loader", spy)
    _run(tiny_task, tmp_path / "run", tmp_path / "work", epochs=1, batch_size=2)
    assert seen == [0.5]
