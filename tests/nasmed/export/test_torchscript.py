"""``nasmed export torchscript``: the traced module equals the network on unseen shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasmed.cli.main import main
from nasmed.models.spec import load_model


@pytest.mark.parametrize("arch", ["genotype", "unet", "dynunet"])
def test_torchscript_equals_torch(
    arch: str, export_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net.ts"
    assert main(["export", "torchscript", str(export_runs[arch]), "--out", str(out), "-q"]) == 0
    meta = json.loads((tmp_path / "net.ts.json").read_text())
    assert meta["format"] == "torchscript" and meta["max_scaled_diff"] <= meta["tolerance"]
    traced = torch.jit.load(str(out))
    _, net = load_model(export_runs[arch])
    x = torch.randn(2, 1, 64, 32, 48)
    with torch.no_grad():
        assert torch.allclose(traced(x), net(x), atol=1e-5, rtol=1e-5)
