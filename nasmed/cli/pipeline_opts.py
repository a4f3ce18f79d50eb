"""Options of a pipelined (torchgpipe) run, shared by the verbs that train a network.

``add_pipeline_args(parser)`` adds ``--pipeline-devices``, ``--chunks``, ``--checkpoint``,
``--balance`` and ``--balance-by``; ``pipeline_config_from_args(args)`` turns them into a
validated :class:`~nasmed.pipeline.gpipe.PipelineConfig`, or ``None`` without
``--pipeline-devices``. Not a verb group (it has no ``register``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the verbs parse without importing torch (--cpu-allocator must come first)
    from nasmed.pipeline.gpipe import PipelineConfig

__all__ = ["BALANCE_BY", "CHECKPOINT_MODES", "add_pipeline_args", "pipeline_config_from_args"]

#: :class:`~nasmed.pipeline.gpipe.CheckpointMode`'s values (tested equal).
CHECKPOINT_MODES = ("always", "except_last", "never")
#: :class:`~nasmed.pipeline.balance.BalanceBy`'s values (tested equal).
BALANCE_BY = ("time", "memory", "mixed")


def add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    """Add the pipeline options to ``parser`` (in their own argument group)."""
    group = parser.add_argument_group(
        "pipeline (torchgpipe)",
        "split the network over devices of this machine and train it on micro-batches",
    )
    group.add_argument(
        "--pipeline-devices",
        default=None,
        metavar="DEV,DEV,...",
        help="one device per partition, e.g. cuda:0,cuda:1 (cpu,cpu to try it); off by default",
    )
    group.add_argument(
        "--chunks", type=int, default=4, help="micro-batches per batch (default 4; <= --batch)"
    )
    group.add_argument(
        "--checkpoint",
        choices=CHECKPOINT_MODES,
        default="always",
        help="recompute activations in backward: always (least memory), except_last, never "
        "(default always)",
    )
    group.add_argument(
        "--balance",
        default="auto",
        metavar="auto|N,N,...",
        help="layers per partition, one number per device, or auto (profile and balance; "
        "default); the run log shows the layers and the chosen split",
    )
    group.add_argument(
        "--balance-by",
        choices=BALANCE_BY,
        default="mixed",
        help="the cost auto balance evens out: time, memory or mixed (default mixed)",
    )


def pipeline_config_from_args(args: argparse.Namespace) -> PipelineConfig | None:
    """The pipeline of the parsed options, or ``None`` without ``--pipeline-devices``.

    Raises:
        ConfigError: a device that does not exist, a malformed balance, chunks < 1.
    """
    if not args.pipeline_devices:
        return None
    from nasmed.pipeline.gpipe import PipelineConfig

    return PipelineConfig.parse(
        args.pipeline_devices,
        chunks=args.chunks,
        checkpoint=args.checkpoint,
        balance=args.balance,
        balance_by=args.balance_by,
    )
