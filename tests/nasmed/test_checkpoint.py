from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nasmed.errors import RunDirError
from nasmed.train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint


def test_checkpoint_round_trip_weights_only(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(5)
    state = {
        "model": net.state_dict(),
        "optim": opt.state_dict(),
        "epoch": 3,
        "rng": capture_rng({"g": gen}),
    }
    path = save_checkpoint(tmp_path / "ckpt.pt", state)
    assert not list(tmp_path.glob(".*tmp"))
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["model"]["weight"], net.state_dict()["weight"])


def test_rng_restore_reproduces_draws(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(1)
    save_checkpoint(tmp_path / "r.pt", {"rng": capture_rng({"g": gen})})
    first = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    )
    restore_rng(load_checkpoint(tmp_path / "r.pt")["rng"], {"g": gen})
    again = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    )
    assert first == again


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match=r"bad\.pt: not loadable"):
        load_checkpoint(tmp_path / "bad.pt")
