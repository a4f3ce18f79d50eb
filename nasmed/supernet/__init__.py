"""The searchable encoder–decoder: cells, the network of cells, sampling plans, costs.

Main entry points: :class:`Supernet`, :func:`sample_genotype`, :func:`expected_cost`,
:func:`architecture_cost`.
"""

from __future__ import annotations

from nasmed.supernet.cell import Cell, CellPlan, Term
from nasmed.supernet.cost import Cost, architecture_cost, expected_cost, level_voxels, param_range
from nasmed.supernet.latency import (
    PROFILE_BATCH,
    LatencyTable,
    architecture_latency,
    latency_table,
)
from nasmed.supernet.network import CellNetwork
from nasmed.supernet.plans import Mode
from nasmed.supernet.sampling import sample_genotype
from nasmed.supernet.supernet import Supernet, genotype_plans, plan_genotype

__all__ = [
    "PROFILE_BATCH",
    "Cell",
    "CellNetwork",
    "CellPlan",
    "Cost",
    "LatencyTable",
    "Mode",
    "Supernet",
    "Term",
    "architecture_cost",
    "architecture_latency",
    "expected_cost",
    "genotype_plans",
    "latency_table",
    "level_voxels",
    "param_range",
    "plan_genotype",
    "sample_genotype",
]
