"""``nasmed train --arch nnunet:PLANS.json:CONFIG``: nnU-Net v2's own network as a baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from nasmed.cli.main import main
from nasmed.models.factory import build_model, patch_divisor

from .nnunet_plans_fixture import write_preprocessed

pytest.importorskip("nnunetv2")


def test_build_nnunet_network(tmp_path: Path) -> None:
    plans = write_preprocessed(tmp_path) / "nnUNetPlans.json"
    arch = f"nnunet:{plans}:3d_fullres"
    assert patch_divisor(arch) == 8  # strides [1,1,1],[1,2,2],[2,2,2],[2,2,2]: 4 x 8 x 8
    net = build_model(arch, 2, 3, deep_supervision=True)
    assert type(net.network).__name__ == "PlainConvUNet"
    x = torch.randn(1, 2, 16, 32, 32)
    net.train()
    outs = net(x)
    assert isinstance(outs, tuple) and [tuple(o.shape[2:]) for o in outs] == [
        (16, 32, 32),
        (16, 16, 16),
        (8, 8, 8),
    ]
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (1, 3, 16, 32, 32)


def test_train_and_predict_nnunet_baseline(
    export_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = write_preprocessed(tmp_path / "pre") / "nnUNetPlans.json"
    run = tmp_path / "run"
    args = ["train", str(export_task), "--arch", f"nnunet:{plans}:3d_fullres", "--out", str(run)]
    args += ["--epochs", "1", "--steps", "2", "--patch", "32", "32", "16", "--folds", "3"]
    args += ["--deep-supervision", "--workers", "0", "--device", "cpu", "-q"]
    assert main(args) == 0
    spec = json.loads((run / "model.json").read_text())
    assert spec["arch"] == f"nnunet:{plans.resolve()}:3d_fullres"
    assert spec["info"]["params"] > 0
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--model",
                str(run),
                str(export_task / "imagesTs"),
                "--out",
                str(out),
                "--device",
                "cpu",
                "-q",
            ]
        )
        == 0
    )
    assert len(list(out.glob("*.nii.gz"))) == 1


def test_bad_nnunet_arch_exits_2(
    export_task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = write_preprocessed(tmp_path / "pre") / "nnUNetPlans.json"
    for arch, message in [
        (f"nnunet:{tmp_path / 'none.json'}:3d_fullres", "plans file not found"),
        (f"nnunet:{plans}:2d", "no configuration '2d'"),
        ("nnunet:only", "expected nnunet:PLANS.json:CONFIGURATION"),
    ]:
        run = tmp_path / "run"
        assert main(["train", str(export_task), "--arch", arch, "--out", str(run), "-q"]) == 2
        assert message in capsys.readouterr().err
        assert not run.exists()


def test_nnunet_arch_without_nnunetv2_exits_2(
    export_task: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plans = write_preprocessed(tmp_path / "pre") / "nnUNetPlans.json"
    monkeypatch.setitem(sys.modules, "nnunetv2.utilities.plans_handling.plans_handler", None)
    run = tmp_path / "run"
    assert (
        main(["train", str(export_task), "--arch", f"nnunet:{plans}:3d_fullres", "--out", str(run)])
        == 2
    )
    err = capsys.readouterr().err
    assert "needs nnunetv2, not installed" in err and "pip install" in err
    assert not run.exists()
