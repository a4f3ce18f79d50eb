"""``transfer``: exactly the tensors of matching name and shape are loaded; frozen encoder;
bad weights leave nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import searchspaces
from decathlon.synthetic import write_synthetic_task
from nasmed.cli.main import main
from nasmed.errors import ConfigError, RunDirError
from nasmed.models.baselines import encoder_parameter_names
from nasmed.models.factory import build_model
from nasmed.supernet import sample_genotype
from nasmed.train.config import TrainConfig
from nasmed.training import train
from nasmed.transfer import TransferConfig, adapt_input_channels, match_state, transfer

TRAIN = TrainConfig(epochs=1, patch=(16, 16, 8), steps_per_epoch=1, folds=2, workers=0)
RUNTIME = dict(device="cpu", progress=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("transfer")
    task_a = write_synthetic_task(root / "A", cases=2, shape=(24, 24, 16), classes=1, test_cases=0)
    task_b = write_synthetic_task(
        root / "B", cases=2, shape=(20, 28, 16), classes=2, modalities=2, seed=4, test_cases=0
    )
    geno = root / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 2).save(geno)
    source = train(task_a, geno, root / "source", TRAIN, **RUNTIME)
    return {"A": task_a, "B": task_b, "genotype": geno, "source": source, "root": root}


def test_transfer_loads_exactly_the_matching_tensors(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    source_state = torch.load(setup["source"] / "model.pt", weights_only=True)
    # task B: 2 modalities, 2 classes + background; deep supervision (the default) adds aux heads
    target = build_model(setup["genotype"], 2, 3, deep_supervision=True)
    own = target.state_dict()
    expected = sorted(k for k, v in source_state.items() if k in own and v.shape == own[k].shape)

    config = TransferConfig(
        weights=setup["source"], freeze_encoder_epochs=2, train=TRAIN.replace(epochs=2)
    )
    run = transfer(setup["genotype"], setup["B"], tmp_path / "run", config, **RUNTIME)
    report = json.loads((run / "transfer.json").read_text())
    assert report["transferred"] == expected
    assert report["adapted"] == ["net.stem.conv.weight"]  # 1 -> 2 input channels
    heads = {k for k in source_state if k.startswith(("net.head.", "net.aux_heads."))}
    assert {"net.head.conv.weight", "net.head.conv.bias"} < heads
    assert set(report["skipped_shape"]) == heads  # every head predicts another number of classes
    assert set(report["initialised"]) == set(own) - set(expected) - {"net.stem.conv.weight"}
    assert report["skipped_missing"] == []

    final = torch.load(run / "model.pt", weights_only=True)
    encoder = set(encoder_parameter_names(target))
    frozen = set(report["frozen"])
    assert frozen == encoder & set(expected) and frozen
    assert "net.stem.conv.weight" not in frozen  # adapted kernels are fine-tuned
    for name in frozen:  # frozen for every epoch: still the source's values
        assert torch.equal(final[name], source_state[name]), name
    moved = [n for n in expected if n not in encoder and not torch.equal(final[n], source_state[n])]
    assert moved  # the decoder was fine-tuned


def test_no_adapt_inputs_reinitialises_the_stem(setup: dict[str, Path], tmp_path: Path) -> None:
    target = build_model(setup["genotype"], 2, 3)
    state = torch.load(setup["source"] / "model.pt", weights_only=True)
    loadable, report = match_state(target, state, adapt_inputs=False)
    assert report["adapted"] == [] and "net.stem.conv.weight" in report["skipped_shape"]
    assert "net.stem.conv.weight" not in loadable
    assert "net.stem.conv.weight" in report["initialised"]


def test_unet_adapts_its_input_convolutions_only() -> None:
    source = build_model("unet", 1, 3, patch=(16, 16, 16))
    target = build_model("unet", 2, 2, patch=(16, 16, 16))
    loadable, report = match_state(target, source.state_dict())
    modules = dict(target.named_modules())
    assert report["adapted"]  # the first convolution (and its residual) read the image
    for name in report["adapted"]:
        conv = modules[name.removesuffix(".weight")]
        assert isinstance(conv, torch.nn.Conv3d) and conv.in_channels == 2
        assert loadable[name].shape == target.state_dict()[name].shape
    transposed = [
        f"{n}.weight"
        for n, m in modules.items()
        if isinstance(m, torch.nn.ConvTranspose3d) and m.out_channels == 2
    ]
    assert transposed and set(transposed) <= set(report["skipped_shape"])  # the classes
    target.load_state_dict(loadable, strict=False)  # every loadable tensor fits


@pytest.mark.parametrize(
    ("source_channels", "target_channels"), [(1, 2), (1, 4), (2, 3), (2, 4), (3, 2), (3, 1)]
)
def test_adapted_kernel_gives_the_source_response(
    source_channels: int, target_channels: int
) -> None:
    torch.manual_seed(0)
    source = torch.nn.Conv3d(source_channels, 5, 3, padding=1)
    weight = adapt_input_channels(source.weight.detach(), target_channels)
    assert weight.shape == (5, target_channels, 3, 3, 3)
    image = torch.randn(2, 1, 6, 6, 6)  # every modality shows the same image
    expected = F.conv3d(image.expand(-1, source_channels, -1, -1, -1), source.weight, padding=1)
    got = F.conv3d(image.expand(-1, target_channels, -1, -1, -1), weight, padding=1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not a conv kernel"):
        adapt_input_channels(torch.zeros(5, 2), 3)


def test_bad_weights_leave_nothing(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(RunDirError, match="not loadable"):
        config = TransferConfig(weights=junk, train=TRAIN)
        transfer(setup["genotype"], setup["B"], tmp_path / "r1", config, **RUNTIME)
    assert not (tmp_path / "r1").exists()
    unet = build_model("unet", 1, 2, patch=(16, 16, 16))
    torch.save(unet.state_dict(), tmp_path / "unet.pt")
    with pytest.raises(ConfigError, match="no tensor matches"):
        config = TransferConfig(weights=tmp_path / "unet.pt", train=TRAIN)
        transfer(setup["genotype"], setup["B"], tmp_path / "r2", config, **RUNTIME)
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
