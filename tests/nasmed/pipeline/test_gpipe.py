"""GPipe: transparency (same loss and gradients as plain training), batch norm, bad settings."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from monai.networks.layers import SkipConnection
from torch import nn

from nasmed.errors import ConfigError
from nasmed.pipeline.gpipe import CheckpointMode, PipelineConfig, PipelinedNet, build_pipeline
from nasmed.train.losses import DeepSupervisionLoss, make_seg_loss

from .conftest import PATCH

BATCH = 4
CHUNKS = 2
TOLERANCE = 1e-5


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    image = torch.randn(BATCH, 1, *PATCH, generator=gen)
    label = torch.randint(0, 2, (BATCH, 1, *PATCH), generator=gen)
    return image, label


@pytest.mark.parametrize("mode", [m.value for m in CheckpointMode])
@pytest.mark.parametrize("kind", ["derived", "derived_ds", "unet"])
def test_transparency(make_net: Callable[[str], nn.Module], kind: str, mode: str) -> None:
    """Loss and every gradient of the pipelined network equal plain training within 1e-5."""
    net = make_net(kind)
    plain = copy.deepcopy(net)
    loss_fn = DeepSupervisionLoss(make_seg_loss())
    image, label = _batch()
    plain.train()
    expected = loss_fn(plain(image), label)
    expected.backward()

    config = PipelineConfig(("cpu", "cpu"), chunks=CHUNKS, checkpoint=mode)
    piped = build_pipeline(net, config, sample=image[: BATCH // CHUNKS], batch_size=BATCH)
    piped.train()
    loss = loss_fn(piped(image), label)
    loss.backward()

    assert len(piped.balance) == 2 and sum(piped.balance) == len(piped.names)
    assert abs(float(loss.detach()) - float(expected.detach())) <= TOLERANCE
    grads = dict(plain.named_parameters())
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=0, atol=TOLERANCE)


def test_explicit_balance_and_eval_mode(make_net: Callable[[str], nn.Module]) -> None:
    net = make_net("unet")
    n = 11  # unet at 16^3: see test_sequential
    piped = build_pipeline(net, PipelineConfig(("cpu", "cpu", "cpu"), chunks=2, balance=(3, 4, 4)))
    assert piped.balance == [3, 4, 4]
    assert piped.output_device == torch.device("cpu")
    assert piped.costs is None
    text = piped.describe()
    assert "balance 3,4,4" in text and "(auto" not in text and len(text.splitlines()) == 5
    piped.eval()
    net.eval()
    x = torch.randn(3, 1, *PATCH)  # evaluation: any batch size, even below chunks... or above
    with torch.no_grad():
        torch.testing.assert_close(piped(x), net(x), rtol=0, atol=TOLERANCE)
        torch.testing.assert_close(piped(x[:1]), net(x[:1]), rtol=0, atol=TOLERANCE)
    assert sum(piped.balance) == n


def test_deferred_batch_norm_tracks_whole_batches() -> None:
    def make() -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1),
            nn.BatchNorm3d(4),
            SkipConnection(nn.Sequential(nn.Conv3d(4, 4, 3, padding=1), nn.BatchNorm3d(4))),
            nn.Conv3d(8, 2, 1),
        )

    plain, net = make(), make()
    keys = set(net.state_dict())
    x = torch.randn(BATCH, 1, 8, 8, 8)
    plain.train()(x)
    piped = build_pipeline(net, PipelineConfig(("cpu", "cpu"), chunks=CHUNKS, balance=(3, 4)))
    piped.train()(x)
    assert set(net.state_dict()) == keys  # the accumulators stay out of checkpoints
    # the first batch norm sees the same input in both: its statistics are the whole batch's
    # (the second one's input already differs, normalised per micro-batch in training)
    ref, got = plain[1], net[1]
    torch.testing.assert_close(got.running_mean, ref.running_mean, rtol=0, atol=1e-6)
    # torchgpipe tracks the biased variance, PyTorch the unbiased one: n / (n - 1) apart
    n = BATCH * 8**3
    torch.testing.assert_close(got.running_var, ref.running_var, rtol=2.0 / n, atol=1e-6)
    assert int(got.num_batches_tracked) == int(ref.num_batches_tracked) == 1
    # once per batch, not per micro-batch: a second step counts 2
    piped(x)
    assert int(got.num_batches_tracked) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"balance": (5, 5)}, r"--balance 5,5 sums to 10 but the network has 11 layers"),
        ({"devices": ("cpu",) * 12}, r"names 12 devices but the network has only 11 layers"),
        ({"batch_size": 2, "chunks": 4}, r"--chunks 4 is larger than the batch \(2\)"),
    ],
)
def test_settings_that_do_not_fit_the_network(
    make_net: Callable[[str], nn.Module], kwargs: dict[str, object], message: str
) -> None:
    devices = kwargs.pop("devices", ("cpu", "cpu"))
    batch_size = kwargs.pop("batch_size", None)
    config = PipelineConfig(devices, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message) as info:
        build_pipeline(make_net("unet"), config, batch_size=batch_size)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_training_batch_smaller_than_chunks_is_refused(
    make_net: Callable[[str], nn.Module],
) -> None:
    piped = build_pipeline(
        make_net("unet"), PipelineConfig(("cpu", "cpu"), chunks=4, balance=(5, 6))
    )
    piped.train()
    with pytest.raises(ConfigError, match="--chunks 4 is larger than the batch"):
        piped(torch.randn(2, 1, *PATCH))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"devices": ("cpu", "tpu:0")}, r"--pipeline-devices tpu:0: "),
        ({"devices": ("cpu", "cuda:7")}, r"--pipeline-devices cuda:7: "),
        ({"devices": ()}, r"name one device per partition"),
        (
            {"balance": (3, 4, 4)},
            r"--balance 3,4,4 has 3 partitions but --pipeline-devices names 2",
        ),
        ({"balance": (0, 11)}, r"whole number >= 1"),
        ({"chunks": 0}, r"--chunks must be an integer >= 1"),
        (
            {"checkpoint": "sometimes"},
            r"--checkpoint 'sometimes': use always, except_last or never",
        ),
    ],
)
def test_bad_config(kwargs: dict[str, object], message: str) -> None:
    args = {"devices": ("cpu", "cpu"), **kwargs}
    with pytest.raises(ConfigError, match=message) as info:
        PipelineConfig(**args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_parse_command_line_strings() -> None:
    config = PipelineConfig.parse("cpu,cpu", chunks=8, checkpoint="except_last", balance="3,4")
    assert config.devices == ("cpu", "cpu")
    assert config.balance == (3, 4)
    assert config.checkpoint is CheckpointMode.EXCEPT_LAST
    assert config.to_json() == {
        "devices": ["cpu", "cpu"],
        "chunks": 8,
        "checkpoint": "except_last",
        "balance": [3, 4],
        "balance_by": "mixed",
    }
    assert PipelineConfig.parse("cpu", balance="auto").balance is None
    with pytest.raises(ConfigError, match="--balance '3,x': use auto or comma-separated"):
        PipelineConfig.parse("cpu,cpu", balance="3,x")


def test_pipelined_net_is_a_module(make_net: Callable[[str], nn.Module]) -> None:
    net = make_net("unet")
    piped = build_pipeline(net, PipelineConfig(("cpu",), chunks=1, balance=(11,)))
    assert isinstance(piped, PipelinedNet)
    assert {id(p) for p in piped.parameters()} == {id(p) for p in net.parameters()}


def test_pipeline_under_torchrun_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    config = PipelineConfig(("cpu", "cpu"))
    config.check_alone()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(
        ConfigError, match=r"GPipe does not run inside DDP \(2 torchrun processes\)"
    ):
        config.check_alone()
