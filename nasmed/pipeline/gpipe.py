"""Build a torchgpipe :class:`~torchgpipe.GPipe` of a network from a typed, validated config.

``build_pipeline(model, PipelineConfig(devices=("cpu", "cpu"), chunks=4))`` flattens the network
(:func:`~nasmed.pipeline.sequential.to_sequential`), balances it (a given ``balance`` or the
profiled automatic one, :mod:`nasmed.pipeline.balance`), switches batch norm to torchgpipe's
deferred batch norm when the network has any (running statistics then follow whole batches, not
micro-batches), and wraps the GPipe in a :class:`PipelinedNet` that takes its input on any device
and returns its output on the last partition's device. Partitions share the network's modules,
so ``model.state_dict()`` and an optimizer over ``model.parameters()`` see the trained weights.

Every impossible setting is a one-line :class:`~nasmed.errors.ConfigError` raised before anything
runs: a device that does not exist, a balance that does not sum to the layer count or does not
have one entry per device, more partitions than layers, more chunks than the batch has samples.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchgpipe import GPipe
from torchgpipe.batchnorm import DeferredBatchNorm

from nasmed.errors import ConfigError
from nasmed.pipeline.balance import (
    BalanceBy,
    LayerCost,
    format_balance,
    layer_weights,
    partition,
    profile_layers,
)
from nasmed.pipeline.sequential import to_sequential
from nasmed.runtime import resolve_device

__all__ = ["CheckpointMode", "PipelineConfig", "PipelinedNet", "build_pipeline"]

log = logging.getLogger(__name__)


class CheckpointMode(str, Enum):
    """torchgpipe's activation checkpointing: which micro-batches recompute in backward."""

    ALWAYS = "always"
    EXCEPT_LAST = "except_last"
    NEVER = "never"


def _device(spec: str) -> str:
    try:
        return str(resolve_device(spec))
    except ConfigError as exc:
        reason = str(exc).split(": ", 1)[-1]
        raise ConfigError(f"--pipeline-devices {spec}: {reason}") from None


def _balance_text(balance: Sequence[int]) -> str:
    return ",".join(str(b) for b in balance)


@dataclass(frozen=True)
class PipelineConfig:
    """How to pipeline a network (validated on construction).

    Attributes:
        devices: one device per partition, e.g. ``("cuda:0", "cuda:1")`` or ``("cpu", "cpu")``.
        chunks: micro-batches per batch.
        checkpoint: ``always``, ``except_last`` or ``never``.
        balance: layers per partition (one entry per device), or ``None`` to profile and balance
            automatically.
        balance_by: the cost the automatic balance evens out (time, memory or both).
    """

    devices: tuple[str, ...]
    chunks: int = 4
    checkpoint: CheckpointMode = CheckpointMode.ALWAYS
    balance: tuple[int, ...] | None = None
    balance_by: BalanceBy = BalanceBy.MIXED
    _resolved: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        devices = tuple(str(d).strip() for d in self.devices)
        if not devices or any(not d for d in devices):
            raise ConfigError(
                f"--pipeline-devices {','.join(devices)!r}: name one device per partition, "
                "e.g. cuda:0,cuda:1 or cpu,cpu"
            )
        object.__setattr__(self, "devices", devices)
        object.__setattr__(self, "_resolved", tuple(_device(d) for d in devices))
        if isinstance(self.chunks, bool) or not isinstance(self.chunks, int) or self.chunks < 1:
            raise ConfigError(f"--chunks must be an integer >= 1, got {self.chunks!r}")
        try:
            object.__setattr__(self, "checkpoint", CheckpointMode(self.checkpoint))
        except ValueError:
            raise ConfigError(
                f"--checkpoint {self.checkpoint!r}: use always, except_last or never"
            ) from None
        try:
            object.__setattr__(self, "balance_by", BalanceBy(self.balance_by))
        except ValueError:
            raise ConfigError(
                f"--balance-by {self.balance_by!r}: use time, memory or mixed"
            ) from None
        if self.balance is not None:
            balance = tuple(self.balance)
            if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in balance):
                raise ConfigError(
                    f"--balance {_balance_text(balance)}: every partition needs a whole number "
                    ">= 1 of layers"
                )
            if len(balance) != len(devices):
                raise ConfigError(
                    f"--balance {_balance_text(balance)} has {len(balance)} partitions but "
                    f"--pipeline-devices names {len(devices)} devices; give one number per device"
                )
            object.__setattr__(self, "balance", balance)

    @classmethod
    def parse(
        cls,
        devices: str,
        *,
        chunks: int = 4,
        checkpoint: str = "always",
        balance: str = "auto",
        balance_by: str = "mixed",
    ) -> PipelineConfig:
        """The config of command-line strings (``"cuda:0,cuda:1"``, ``"auto"`` or ``"3,4,5"``)."""
        parts: tuple[int, ...] | None = None
        if balance.strip().lower() != "auto":
            try:
                parts = tuple(int(b) for b in balance.split(","))
            except ValueError:
                raise ConfigError(
                    f"--balance {balance!r}: use auto or comma-separated layer counts, e.g. 3,4,5"
                ) from None
        return cls(
            devices=tuple(devices.split(",")),
            chunks=chunks,
            checkpoint=checkpoint,  # type: ignore[arg-type]
            balance=parts,
            balance_by=balance_by,  # type: ignore[arg-type]
        )

    @property
    def torch_devices(self) -> list[torch.device]:
        """The devices as :class:`torch.device` (``auto`` resolved)."""
        return [torch.device(d) for d in self._resolved]

    @property
    def partitions(self) -> int:
        """Number of partitions (one per device)."""
        return len(self.devices)

    def check_batch(self, batch_size: int) -> None:
        """Raise :class:`ConfigError` when a batch of ``batch_size`` cannot fill every chunk."""
        if self.chunks > batch_size:
            raise ConfigError(
                f"--chunks {self.chunks} is larger than the batch ({batch_size}): every "
                f"micro-batch needs a sample; use --chunks <= {batch_size} or a larger --batch"
            )

    def check_alone(self) -> None:
        """Raise :class:`ConfigError` under ``torchrun`` with several processes (GPipe in DDP)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            raise ConfigError(
                f"--pipeline-devices: GPipe does not run inside DDP ({world} torchrun processes); "
                "start one process per machine without --pipeline-devices, or a pipelined run "
                "without torchrun"
            )

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (recorded in ``run.json``)."""
        return {
            "devices": list(self.devices),
            "chunks": self.chunks,
            "checkpoint": self.checkpoint.value,
            "balance": list(self.balance) if self.balance is not None else "auto",
            "balance_by": self.balance_by.value,
        }


class _DeferredBatchNorm(DeferredBatchNorm):
    """torchgpipe's deferred batch norm whose accumulators stay out of the ``state_dict``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("sum", self.sum, persistent=False)
        self.register_buffer("sum_squares", self.sum_squares, persistent=False)


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in module.modules())


class PipelinedNet(nn.Module):
    """A network running as a torchgpipe pipeline.

    Takes its input on any device (moved to the first partition's) and returns its output on
    :attr:`output_device`. In training mode the batch must have at least ``chunks`` samples.

    Args:
        gpipe: the pipeline.
        config: its config.
        costs: the layers' profile, when the balance was profiled.
        names: the layer names.
    """

    def __init__(
        self,
        gpipe: GPipe,
        config: PipelineConfig,
        costs: Sequence[LayerCost] | None,
        names: Sequence[str],
    ) -> None:
        super().__init__()
        self.gpipe = gpipe
        self.config = config
        self.costs = list(costs) if costs is not None else None
        self.names = list(names)

    @property
    def balance(self) -> list[int]:
        """Layers per partition."""
        return list(self.gpipe.balance)

    @property
    def devices(self) -> list[torch.device]:
        """Each partition's device."""
        return list(self.gpipe.devices)

    @property
    def input_device(self) -> torch.device:
        """Where the first partition runs."""
        return self.devices[0]

    @property
    def output_device(self) -> torch.device:
        """Where the output (and so the loss's target) lives."""
        return self.devices[-1]

    def forward(self, x: torch.Tensor) -> Any:
        if self.training:
            self.config.check_batch(x.shape[0])
        return self.gpipe(x.to(self.input_device, non_blocking=True))

    def describe(self) -> str:
        """The balance table (:func:`~nasmed.pipeline.balance.format_balance`) with a title."""
        c = self.config
        title = (
            f"GPipe: {len(self.names)} layers on {c.partitions} partitions, chunks {c.chunks}, "
            f"checkpoint {c.checkpoint.value}, balance {_balance_text(self.balance)}"
            + (f" (auto, by {c.balance_by.value})" if c.balance is None else "")
        )
        table = format_balance(
            self.balance, self.costs, [str(d) for d in self.devices], names=self.names
        )
        return f"{title}\n{table}"


def build_pipeline(
    model: nn.Module,
    config: PipelineConfig,
    *,
    sample: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> PipelinedNet:
    """The GPipe of ``model`` under ``config``.

    Args:
        model: a genotype network, MONAI UNet or a sequence of layers with MONAI skips.
        config: devices, chunks, checkpointing, balance.
        sample: an input micro-batch on the model's device for profiling; needed when
            ``config.balance`` is ``None`` (automatic), also used to show costs otherwise.
        batch_size: the training batch size, checked against ``config.chunks``.

    Raises:
        ConfigError: the network cannot be pipelined, or the settings do not fit it.
    """
    if batch_size is not None:
        config.check_batch(batch_size)
    seq = to_sequential(model)
    names = [name for name, _ in seq.named_children()]
    n = len(names)
    if config.partitions > n:
        raise ConfigError(
            f"--pipeline-devices names {config.partitions} devices but the network has only {n} "
            f"layers to split; use at most {n} devices"
        )
    if config.balance is not None and sum(config.balance) != n:
        raise ConfigError(
            f"--balance {_balance_text(config.balance)} sums to {sum(config.balance)} but the "
            f"network has {n} layers; give {config.partitions} numbers summing to {n}, or "
            "--balance auto"
        )
    costs: list[LayerCost] | None = None
    if sample is not None:
        costs = profile_layers(seq, sample)
    if config.balance is not None:
        balance = list(config.balance)
    else:
        if costs is None:
            raise ValueError("build_pipeline: an automatic balance needs a sample input")
        balance = partition(layer_weights(costs, config.balance_by), config.partitions)
    c = config
    if _has_batch_norm(seq):
        seq = _DeferredBatchNorm.convert_deferred_batch_norm(seq, c.chunks)
        log.info(
            "batch norm: running statistics deferred to whole batches (%d chunks)", config.chunks
        )
    gpipe = GPipe(
        seq,
        balance,
        devices=config.torch_devices,
        chunks=config.chunks,
        checkpoint=config.checkpoint.value,
    )
    net = PipelinedNet(gpipe, config, costs, names)
    log.info("%s", net.describe())
    return net
