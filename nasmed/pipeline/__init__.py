"""Pipeline parallelism with torchgpipe: sequentialise a network, balance it, build the GPipe."""

from __future__ import annotations

from nasmed.pipeline.balance import BalanceBy, LayerCost, format_balance, partition, profile_layers
from nasmed.pipeline.gpipe import CheckpointMode, PipelineConfig, PipelinedNet, build_pipeline
from nasmed.pipeline.sequential import to_sequential

__all__ = [
    "BalanceBy",
    "CheckpointMode",
    "LayerCost",
    "PipelineConfig",
    "PipelinedNet",
    "build_pipeline",
    "format_balance",
    "partition",
    "profile_layers",
    "to_sequential",
]
