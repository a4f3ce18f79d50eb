"""The trainer of a run: one :class:`~nasmed.train.trainer.Trainer` with a strategy.

:func:`make_trainer` picks the strategy: :class:`PipelineStrategy` with a ``PipelineConfig``,
else :class:`~nasmed.engine.strategy.DataParallel` (DDP under torchrun, one process otherwise).
The loss, optimizer, schedule, logging, checkpoints and resume are the trainer's and the
engine's; the strategy replaces only how the network runs. :class:`PipelineStrategy` runs it as a
torchgpipe pipeline over ``PipelineConfig.devices``: the labels and the loss live on the last
partition's device; checkpoints hold the plain network's ``state_dict`` (a pipelined run's
``model.pt`` loads into the plain network). GPipe does not run inside DDP (one pipeline per
process would need torchgpipe to cooperate with DDP's gradient hooks, which it does not): a
pipelined run under ``torchrun`` with more than one process is a
:class:`~nasmed.errors.ConfigError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from nasmed.distributed import world_size
from nasmed.engine.strategy import DataParallel, SingleProcess, Strategy
from nasmed.errors import ConfigError
from nasmed.pipeline.gpipe import PipelineConfig, PipelinedNet, build_pipeline
from nasmed.train.trainer import TrainConfig, Trainer

__all__ = ["PipelineStrategy", "make_trainer"]

log = logging.getLogger(__name__)

PROFILE_SEED = 0


def _in_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, _ConvNd):
            return int(module.in_channels)
    raise ConfigError(f"cannot tell the input channels of a {type(model).__name__} to profile it")


class PipelineStrategy(SingleProcess):
    """Runs the network as a GPipe pipeline (one process, no mixed precision).

    Args:
        pipeline: devices, chunks, checkpointing, balance.
        patch: the training patch (to profile a micro-batch for the balance).
        batch_size: the batch (split into ``pipeline.chunks`` micro-batches).

    Raises:
        ConfigError: run under torchrun with several processes, or more chunks than the batch.
    """

    allows_amp = False

    def __init__(
        self, pipeline: PipelineConfig, patch: tuple[int, int, int], batch_size: int
    ) -> None:
        pipeline.check_alone()
        if world_size() > 1:  # a process group without torchrun's environment
            raise ConfigError("--pipeline-devices: GPipe does not run inside DDP")
        pipeline.check_batch(batch_size)
        self.pipeline = pipeline
        self.patch = patch
        self.batch_size = batch_size
        self.net: PipelinedNet | None = None

    def device(self, device: torch.device) -> torch.device:
        """The last partition's device (labels and loss live there)."""
        return self.pipeline.torch_devices[-1]

    def wrap(
        self, model: nn.Module, device: torch.device, *, find_unused: bool = False
    ) -> nn.Module:
        """The GPipe of ``model`` (balanced on a profiled micro-batch unless given a balance)."""
        p = self.pipeline
        sample = None
        if p.balance is None:
            micro = max(1, self.batch_size // p.chunks)
            gen = torch.Generator().manual_seed(PROFILE_SEED)
            sample = torch.randn(micro, _in_channels(model), *self.patch, generator=gen)
            sample = sample.to(device)
        self.net = build_pipeline(model, p, sample=sample, batch_size=self.batch_size)
        return self.net

    def validation_net(self, model: nn.Module, net: nn.Module) -> nn.Module:
        """The plain network when the partitions share one device, else the pipeline."""
        if isinstance(net, PipelinedNet) and len(set(net.devices)) > 1:
            return net
        return model


def make_trainer(
    model: nn.Module,
    config: TrainConfig,
    *,
    pipeline: PipelineConfig | None = None,
    train_cases: Sequence[str],
    **kwargs: Any,
) -> Trainer:
    """The trainer of a run: with ``pipeline`` a :class:`PipelineStrategy`, else
    :class:`~nasmed.engine.strategy.DataParallel` (a plain single-process run when alone).

    Args:
        model: the network.
        config: training settings.
        pipeline: pipeline settings, or ``None``.
        train_cases: training case names.
        **kwargs: the other :class:`~nasmed.train.trainer.Trainer` arguments.

    Raises:
        ConfigError: a pipeline under DDP, more chunks than the batch, a batch that does not
            split over the ranks.
    """
    strategy: Strategy
    if pipeline is not None:
        if config.patch is None:
            raise ConfigError("the trainer needs a patch (TrainConfig.patch)")
        strategy = PipelineStrategy(pipeline, config.patch, config.batch_size)
    else:
        strategy = DataParallel()
    return Trainer(model, config, train_cases=train_cases, strategy=strategy, **kwargs)
