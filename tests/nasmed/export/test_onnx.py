"""``nasmed export onnx``: outputs equal PyTorch's in onnxruntime; bad input exits 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nasmed.cli.main import main
from nasmed.errors import ConfigError
from nasmed.export.check import TOLERANCE
from nasmed.export.onnx import export_onnx, module_to_onnx, onnx_session
from nasmed.models.spec import load_model

onnx = pytest.importorskip("onnx")


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("arch", ["genotype", "unet", "dynunet"])
def test_onnx_equals_torch(arch: str, export_runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    path = export_onnx(export_runs[arch], out=out)
    assert path == out and out.is_file()
    meta = json.loads((tmp_path / "model.onnx.json").read_text())
    assert meta["opset"] == 17 and meta["tolerance"] == TOLERANCE
    assert meta["max_scaled_diff"] <= TOLERANCE
    graph = onnx.load(str(out)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "x", "y", "z"]
    # an input shape the export never saw: spatial sides changed, batch 3
    _, net = load_model(export_runs[arch])
    x = torch.randn(3, 1, 48, 64, 32)
    with torch.no_grad():
        ref = net(x).numpy()
    got = onnx_session(out).run(None, {"image": x.numpy()})[0]
    assert got.shape == ref.shape == (3, 2, 48, 64, 32)
    scale = max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(got - ref).max()) <= TOLERANCE * scale


def test_cli_writes_into_run_dir(
    export_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(export_runs["unet"], run)
    assert main(["export", "onnx", str(run), "--opset", "13", "-q"]) == 0
    assert "opset 13" in capsys.readouterr().out
    assert json.loads((run / "model.onnx.json").read_text())["opset"] == 13
    assert onnx.load(str(run / "model.onnx")).opset_import[0].version == 13


def test_opset_out_of_range_exits_2(
    export_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(export_runs["unet"], run)
    assert main(["export", "onnx", str(run), "--opset", "99"]) == 2
    assert "opset" in _err(capsys)
    assert not (run / "model.onnx").exists() and not (run / "model.onnx.json").exists()


class _Trilinear(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2, mode="trilinear", align_corners=True)


def test_opset_that_cannot_express_an_op() -> None:
    # ONNX Resize expresses align_corners only from opset 11
    with pytest.raises(ConfigError, match="opset 10 cannot express"):
        module_to_onnx(_Trilinear(), torch.zeros(1, 1, 4, 4, 4), opset=10, what="net")
    assert module_to_onnx(_Trilinear(), torch.zeros(1, 1, 4, 4, 4), opset=11, what="net")


def test_run_without_weights_exits_2(
    export_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(export_runs["unet"], run)
    (run / "model.pt").unlink()
    for route in ("onnx", "torchscript"):
        assert main(["export", route, str(run)]) == 2
        assert "model.pt: weights file not found" in _err(capsys)
    assert main(["export", "bundle", str(run), "--out", str(tmp_path / "b")]) == 2
    assert "weights file not found" in _err(capsys)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("model")) == ["model.json"]
    assert not (tmp_path / "b").exists()
