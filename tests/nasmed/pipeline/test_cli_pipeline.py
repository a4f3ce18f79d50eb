"""``nasmed train --pipeline-devices``: a pipelined run; each bad setting exits 2 in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasmed.cli.main import main
from nasmed.models.baselines import make_unet
from nasmed.train.history import read_history


def _train(task: Path, work: Path, run: Path, *extra: str) -> list[str]:
    return [
        "train", str(task), "--arch", "unet", "--out", str(run), "--epochs", "1", "--steps", "1",
        "--batch", "2", "--patch", "16", "16", "16", "--width", "0.25", "--folds", "4",
        "--work-dir", str(work), "--workers", "0", "--device", "cpu", "-q", *extra,
    ]  # fmt: skip


def test_pipelined_training_run(easy_task: Path, easy_work: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = _train(easy_task, easy_work, run, "--pipeline-devices", "cpu,cpu", "--chunks", "2")
    assert main([*args, "--checkpoint", "except_last", "--balance", "5,6"]) == 0
    settings = json.loads((run / "run.json").read_text())["settings"]
    assert settings["pipeline"] == {
        "devices": ["cpu", "cpu"],
        "chunks": 2,
        "checkpoint": "except_last",
        "balance": [5, 6],
        "balance_by": "mixed",
    }
    # the weights are the plain network's: they load into MONAI's UNet as it is
    state = torch.load(run / "model.pt", weights_only=True)
    make_unet(1, 2, width=0.25, patch=(16, 16, 16)).load_state_dict(state)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--balance", "3,4"], "--balance 3,4 sums to 7 but the network has 11 layers"),
        (["--balance", "3,4,4"], "--balance 3,4,4 has 3 partitions but --pipeline-devices names 2"),
        (["--balance", "three"], "--balance 'three': use auto or comma-separated layer counts"),
        (["--chunks", "4"], "--chunks 4 is larger than the batch (2)"),
        (["--checkpoint", "never", "--chunks", "0"], "--chunks must be an integer >= 1"),
    ],
)
def test_bad_pipeline_settings_exit_2(
    easy_task: Path,
    easy_work: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    run = tmp_path / "run"
    base = _train(easy_task, easy_work, run, "--pipeline-devices", "cpu,cpu", "--chunks", "2")
    assert main([*base, *extra]) == 2  # the last --chunks wins
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("nasmed train: error: ") and message in err
    assert not run.exists() or not any(run.iterdir())  # nothing half-written


@pytest.mark.parametrize(
    ("devices", "arch", "message"),
    [
        ("cpu,cuda:3", "unet", "--pipeline-devices cuda:3: "),
        ("cpu,tpu", "unet", "--pipeline-devices tpu: "),
        (",".join(["cpu"] * 12), "unet", "names 12 devices but the network has only 11 layers"),
        ("cpu,cpu", "dynunet", "dynunet cannot be pipelined"),
    ],
)
def test_devices_and_networks_that_cannot_pipeline_exit_2(
    easy_task: Path,
    easy_work: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    devices: str,
    arch: str,
    message: str,
) -> None:
    run = tmp_path / "run"
    args = _train(easy_task, easy_work, run, "--pipeline-devices", devices, "--chunks", "2")
    args[args.index("unet")] = arch
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not run.exists() or not any(run.iterdir())


@pytest.mark.slow
def test_torchrun_train_on_two_processes(easy_task: Path, easy_work: Path, tmp_path: Path) -> None:
    """``torchrun --nproc_per_node 2 -m nasmed train``: the one-process run's losses and Dice."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    args = _train(easy_task, easy_work, single)[1:]  # without the verb
    args[args.index("--batch") + 1] = "4"
    assert main(["train", *args]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    argv = [*cmd, "-m", "nasmed", "train", *args]
    argv[argv.index(str(single))] = str(ddp)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = read_history(single / "history.csv"), read_history(ddp / "history.csv")
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-5)
    assert [r["val_dice"] for r in b] == pytest.approx([r["val_dice"] for r in a], abs=1e-4)
    assert (ddp / "model.pt").is_file() and (ddp / "model.json").is_file()
    assert len(list((ddp / "tensorboard").iterdir())) == 1  # rank 0 alone wrote
    assert done.stdout.count("trained 1 epochs") == 1  # and rank 0 alone reported
    # a pipeline cannot run inside DDP: refused before anything is written
    argv[argv.index(str(ddp))] = str(tmp_path / "piped")
    done = subprocess.run(
        [*argv, "--pipeline-devices", "cpu,cpu"], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode != 0 and "GPipe does not run inside DDP" in done.stderr


def test_option_choices_are_the_enums() -> None:
    from nasmed.cli.pipeline_opts import BALANCE_BY, CHECKPOINT_MODES
    from nasmed.pipeline.balance import BalanceBy
    from nasmed.pipeline.gpipe import CheckpointMode

    assert tuple(m.value for m in CheckpointMode) == CHECKPOINT_MODES
    assert tuple(b.value for b in BalanceBy) == BALANCE_BY
