from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nasmed.engine.checkpoint import SCHEMA, VERSION, load_model_state, make_checkpoint, upgrade
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
    save_checkpoint(tmp_path / "r.pt", make_checkpoint("train", rng=capture_rng({"g": gen})))
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


def _legacy_train(net: torch.nn.Module) -> dict[str, object]:
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 2,
            "rng": capture_rng(), "best_dice": 0.5}  # fmt: skip


def test_checkpoints_carry_schema_version_and_kind(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "c.pt", make_checkpoint("weights", model=net.state_dict(),
                                                               epoch=1, dice=0.3))  # fmt: skip
    raw = torch.load(path, weights_only=True)
    assert (raw["schema"], raw["version"], raw["kind"]) == (SCHEMA, VERSION, "weights")
    assert load_checkpoint(path, kind="weights")["dice"] == 0.3
    with pytest.raises(
        RunDirError, match=r"c\.pt: not a checkpoint of this run \(it is a 'weights'"
    ):
        load_checkpoint(path, kind="train")
    with pytest.raises(ValueError, match="unknown checkpoint kind"):
        make_checkpoint("nonsense")


def test_old_layouts_are_upgraded(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    torch.save(_legacy_train(net), tmp_path / "last.pt")
    state = load_checkpoint(tmp_path / "last.pt", kind="train")
    assert (state["version"], state["epoch"], state["best_dice"]) == (VERSION, 2, 0.5)
    search = {"supernet": net.state_dict(), "weight_optimizer": {}, "arch_optimizer": {},
              "epoch": 1, "rng": {}, "last_dice": 0.25}  # fmt: skip
    up = upgrade(search, "x.pt")
    assert up["kind"] == "search" and up["final_dice"] == 0.25 and "supernet" not in up
    assert torch.equal(up["model"]["weight"], net.weight)
    old_classify = {"config": {}, "classes": ["a"], "state_dict": net.state_dict()}
    torch.save(old_classify, tmp_path / "model.pt")
    assert torch.equal(load_model_state(tmp_path / "model.pt")["bias"], net.bias)


def test_newer_or_foreign_checkpoints_are_refused_in_one_line(tmp_path: Path) -> None:
    newer = {**make_checkpoint("train", model={}), "version": VERSION + 1}
    torch.save(newer, tmp_path / "new.pt")
    with pytest.raises(RunDirError, match=rf"new\.pt: checkpoint version {VERSION + 1} was "
                       "written by a newer nasmed") as err:  # fmt: skip
        load_checkpoint(tmp_path / "new.pt")
    assert "\n" not in str(err.value)
    torch.save({"supernet": {}, "foo": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(RunDirError, match="not a checkpoint of this run"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"schema": "other.tool", "version": 1}, tmp_path / "other.pt")
    with pytest.raises(RunDirError, match="not a nasmed checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_one_loader_reads_plain_state_dicts_and_checkpoints(tmp_path: Path) -> None:
    net = torch.nn.Linear(3, 2)
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    save_checkpoint(tmp_path / "ck.pt", make_checkpoint("weights", model=net.state_dict(),
                                                        epoch=0, dice=0.1))  # fmt: skip
    for name in ("plain.pt", "ck.pt"):
        assert torch.equal(load_model_state(tmp_path / name)["weight"], net.weight)
    torch.save({"weight": torch.full((2,), float("nan"))}, tmp_path / "nan.pt")
    with pytest.raises(RunDirError, match="NaN or infinite"):
        load_model_state(tmp_path / "nan.pt")
