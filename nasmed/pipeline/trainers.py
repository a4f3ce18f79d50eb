"""The trainer of a run: plain, data-parallel (DDP under torchrun) or pipelined (GPipe).

:func:`make_trainer` picks one; all share the :class:`~nasmed.train.trainer.Trainer`'s loss,
optimizer, schedule, logging, checkpoints and resume, replacing only how the network runs.
:class:`PipelineTrainer` runs it as a torchgpipe pipeline over ``PipelineConfig.devices``: the
labels and the loss live on the last partition's device; checkpoints hold the plain network's
``state_dict`` (a pipelined run's ``model.pt`` loads into the plain network). GPipe does not run
inside DDP (one pipeline per process would need torchgpipe to cooperate with DDP's gradient
hooks, which it does not): a pipelined run under ``torchrun`` with more than one process is a
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
from nasmed.errors import ConfigError
from nasmed.pipeline.ddp import DistributedTrainer
from nasmed.pipeline.gpipe import PipelineConfig, PipelinedNet, build_pipeline
from nasmed.train.trainer import TrainConfig, Trainer

__all__ = ["PipelineTrainer", "make_trainer"]

log = logging.getLogger(__name__)

PROFILE_SEED = 0


def _in_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, _ConvNd):
            return int(module.in_channels)
    raise ConfigError(f"cannot tell the input channels of a {type(model).__name__} to profile it")


class PipelineTrainer(DistributedTrainer):
    """Trains the network as a GPipe pipeline (one process).

    Args:
        model: the network.
        config: training settings (``batch_size`` is split into ``pipeline.chunks``).
        pipeline: devices, chunks, checkpointing, balance.
        **kwargs: the other :class:`~nasmed.train.trainer.Trainer` arguments; ``device`` is
            replaced by the last partition's device.

    Raises:
        ConfigError: run under torchrun with several processes, more chunks than the batch, or a
            pipeline that does not fit the network.
    """

    def __init__(
        self, model: nn.Module, config: TrainConfig, *, pipeline: PipelineConfig, **kwargs: Any
    ) -> None:
        pipeline.check_alone()
        if world_size() > 1:  # a process group without torchrun's environment
            raise ConfigError("--pipeline-devices: GPipe does not run inside DDP")
        pipeline.check_batch(config.batch_size)
        self.pipeline = pipeline
        kwargs["device"] = pipeline.torch_devices[-1]
        super().__init__(model, config, **kwargs)
        if self.amp:
            log.warning("mixed precision is off in a pipeline (partitions run in worker threads)")
            self.amp = False
            self.scaler = torch.amp.GradScaler("cuda", enabled=False)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """The GPipe of ``model`` (balanced on a profiled micro-batch unless given a balance)."""
        c, p = self.config, self.pipeline
        sample = None
        if p.balance is None:
            micro = max(1, c.batch_size // p.chunks)
            gen = torch.Generator().manual_seed(PROFILE_SEED)
            sample = torch.randn(micro, _in_channels(model), *self.patch, generator=gen)
            sample = sample.to(self.device)
        net = build_pipeline(model, p, sample=sample, batch_size=c.batch_size)
        return net

    @property
    def pipelined(self) -> PipelinedNet:
        """The pipeline running the network."""
        assert isinstance(self.net, PipelinedNet)
        return self.net

    def validate(self, epoch: int) -> dict[str, float] | None:
        """Validate the plain network when its partitions share one device, else the pipeline."""
        if len(set(self.pipelined.devices)) == 1:
            return super().validate(epoch)
        model, self.model = self.model, self.net
        try:
            return super().validate(epoch)
        finally:
            self.model = model


def make_trainer(
    model: nn.Module,
    config: TrainConfig,
    *,
    pipeline: PipelineConfig | None = None,
    train_cases: Sequence[str],
    **kwargs: Any,
) -> Trainer:
    """The trainer of a run: :class:`PipelineTrainer` with ``pipeline``, else
    :class:`~nasmed.pipeline.ddp.DistributedTrainer` (a plain Trainer in one process).

    Args:
        model: the network.
        config: training settings.
        pipeline: pipeline settings, or ``None``.
        train_cases: training case names.
        **kwargs: the other :class:`~nasmed.train.trainer.Trainer` arguments.
    """
    if pipeline is not None:
        return PipelineTrainer(model, config, pipeline=pipeline, train_cases=train_cases, **kwargs)
    return DistributedTrainer(model, config, train_cases=train_cases, **kwargs)
