"""``transfer``: exactly the tensors of matching name and shape are loaded; frozen encoder;
bad weights leave nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import searchspaces
from decathlon.synthetic import write_synthetic_task
from nasmed.cli.main import main
from nasmed.errors import ConfigError, RunDirError
from nasmed.models.baselines import encoder_parameter_names
from nasmed.models.factory import build_model
from nasmed.supernet import sample_genotype
from nasmed.train.api import train
from nasmed.transfer import transfer

COMMON = dict(patch=(16, 16, 8), steps_per_epoch=1, device="cpu", progress=False, folds=2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("transfer")
    task_a = write_synthetic_task(root / "A", cases=2, shape=(24, 24, 16), classes=1, test_cases=0)
    task_b = write_synthetic_task(
        root / "B", cases=2, shape=(20, 28, 16), classes=2, modalities=2, seed=4, test_cases=0
    )
    geno = root / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 2).save(geno)
    source = train(task_a, geno, root / "source", epochs=1, **COMMON)  # type: ignore[arg-type]
    return {"A": task_a, "B": task_b, "genotype": geno, "source": source, "root": root}


def test_transfer_loads_exactly_the_matching_tensors(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    source_state = torch.load(setup["source"] / "model.pt", weights_only=True)
    target = build_model(setup["genotype"], 2, 3)  # task B: 2 modalities, 2 classes + background
    own = target.state_dict()
    expected = sorted(k for k, v in source_state.items() if k in own and v.shape == own[k].shape)

    run = transfer(
        setup["genotype"],
        setup["B"],
        tmp_path / "run",
        weights=setup["source"],
        freeze_encoder_epochs=2,
        epochs=2,
        **COMMON,  # type: ignore[arg-type]
    )
    report = json.loads((run / "transfer.json").read_text())
    assert report["transferred"] == expected
    assert "net.stem.conv.weight" in report["skipped_shape"]  # 1 -> 2 input channels
    assert {"net.head.conv.weight", "net.head.conv.bias"} <= set(report["skipped_shape"])
    assert set(report["initialised"]) == set(own) - set(expected)
    assert report["skipped_missing"] == []

    final = torch.load(run / "model.pt", weights_only=True)
    encoder = set(encoder_parameter_names(target))
    frozen = set(report["frozen"])
    assert frozen == encoder & set(expected) and frozen
    for name in frozen:  # frozen for every epoch: still the source's values
        assert torch.equal(final[name], source_state[name]), name
    moved = [n for n in expected if n not in encoder and not torch.equal(final[n], source_state[n])]
    assert moved  # the decoder was fine-tuned


def test_bad_weights_leave_nothing(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(RunDirError, match="not loadable"):
        transfer(setup["genotype"], setup["B"], tmp_path / "r1", weights=junk, epochs=1, **COMMON)  # type: ignore[arg-type]
    assert not (tmp_path / "r1").exists()
    unet = build_model("unet", 1, 2, patch=(16, 16, 16))
    torch.save(unet.state_dict(), tmp_path / "unet.pt")
    with pytest.raises(ConfigError, match="no tensor matches"):
        transfer(
            setup["genotype"],
            setup["B"],
            tmp_path / "r2",
            weights=tmp_path / "unet.pt",
            epochs=1,
            **COMMON,
        )  # type: ignore[arg-type]
    assert not (tmp_path / "r2").exists()
    args = [
        "transfer",
        str(setup["B"]),
        "--arch",
        str(setup["genotype"]),
        "--weights",
        str(junk),
        "--out",
        str(tmp_path / "r3"),
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "not loadable" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r3").exists()
