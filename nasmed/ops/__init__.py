"""Candidate operations of the search: a registry of dimension-agnostic modules with costs.

>>> from nasmed.ops import create_op, list_ops, op_cost
>>> op = create_op("conv3", spatial_dims=3, in_channels=8, out_channels=8)
>>> op_cost("conv3", 3, in_channels=8, out_channels=8).params
1744
"""

from __future__ import annotations

from nasmed.ops import candidates as _candidates  # noqa: F401  (registers the built-in ops)
from nasmed.ops.blocks import conv_block, conv_block_cost
from nasmed.ops.registry import (
    OpCost,
    create_op,
    list_ops,
    op_class,
    op_cost,
    register_op,
)

__all__ = [
    "OpCost",
    "conv_block",
    "conv_block_cost",
    "create_op",
    "list_ops",
    "op_class",
    "op_cost",
    "register_op",
]
