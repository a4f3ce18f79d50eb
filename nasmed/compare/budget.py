"""Measured costs, the baselines' matched widths and each network's epochs: ``costs.json``.

:func:`plan_costs` measures every genotype network (:func:`~nasmed.compare.costs.measure_cost`),
matches each baseline's width to the reference network's cost (:func:`reference_cost`: the first
found network's, else the random networks' medians) on each criterion, and fixes every network's
epochs (:func:`epochs_for`). It writes ``OUT/costs.json`` at the first start and reads it back
on resume, so a resumed comparison trains the same patch, widths and budgets; networks and
baselines added on resume are measured then, matched to the first start's reference, and
appended.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch

from decathlon.fsutil import atomic_write_json
from decathlon.plan import Plan
from nasmed.compare.candidates import Candidate
from nasmed.compare.config import CompareConfig, Match
from nasmed.compare.costs import Cost, match_widths, measure_cost
from nasmed.genotype import Genotype

__all__ = [
    "COSTS_FILE",
    "RANDOM_MEDIAN",
    "epochs_for",
    "plan_costs",
    "recorded_patch",
    "reference_cost",
]

log = logging.getLogger(__name__)

COSTS_FILE = "costs.json"

#: ``costs.json``'s ``reference`` when no network was found: the baselines match the medians.
RANDOM_MEDIAN = "median of the random networks"


def recorded_patch(out: Path) -> tuple[int, int, int] | None:
    """The patch the comparison in ``out`` measured and trains at (``None``: no ``costs.json``)."""
    path = out / COSTS_FILE
    if not path.is_file():
        return None
    p = json.loads(path.read_text(encoding="utf-8"))["patch"]
    return (int(p[0]), int(p[1]), int(p[2]))


def reference_cost(reference: str, networks: Mapping[str, Mapping[str, Any]]) -> Cost:
    """The cost the baselines' widths are matched to.

    Args:
        reference: a network's name, or :data:`RANDOM_MEDIAN`.
        networks: measured costs by name (``costs.json``'s ``networks``).

    Returns:
        The reference network's cost, or the medians (each cost apart) over the random
        networks (``random_*``).
    """
    if reference != RANDOM_MEDIAN:
        return Cost.from_json(networks[reference])
    values = [Cost.from_json(v) for k, v in networks.items() if k.startswith("random_")]
    return Cost(
        int(statistics.median(c.params for c in values)),
        statistics.median(c.flops for c in values),
        statistics.median(c.step_seconds for c in values),
    )


def plan_costs(
    out: Path,
    config: CompareConfig,
    plan: Plan,
    patch: tuple[int, int, int],
    genotype_candidates: list[Candidate],
    device: torch.device,
) -> tuple[list[Candidate], dict[str, Cost], dict[str, int], str | None]:
    """Measure (or reload) every cost, match the baselines, fix each network's epochs.

    On resume (``costs.json`` exists) only the networks and baselines it lacks are measured;
    the reference and the earlier baselines' widths stay those of the first start.

    Returns:
        Every candidate (the baselines at their matched widths appended), the cost and epochs
        per candidate name, and the name of the reference network.
    """
    path = out / COSTS_FILE

    def measure(arch: Genotype | str, width: float = 1.0, timed: bool = True) -> Cost:
        return measure_cost(
            arch,
            plan.num_channels,
            plan.num_classes,
            patch,
            width=width,
            batch_size=config.batch_size,
            spacing=plan.target_spacing,
            device=device,
            repeats=config.timing_steps,
            time_step=timed,
            amp=config.amp,
        )

    existed = path.is_file()
    if existed:
        data = json.loads(path.read_text(encoding="utf-8"))
    else:
        first = genotype_candidates[0] if genotype_candidates else None
        reference = first.name if first is not None and first.kind == "found" else RANDOM_MEDIAN
        data = {
            "patch": list(patch),
            "device": str(device),
            "reference": reference,
            "networks": {},
            "baselines": {},
            "epochs": {},
        }
    new = [c for c in genotype_candidates if c.name not in data["networks"]]
    new_baselines = [b for b in config.baselines if b not in data["baselines"]]
    if existed and (new or new_baselines) and data.get("device") != str(device):
        log.warning(
            "%s: measuring the added networks on %s, the others were measured on %s: their "
            "step times (and time budgets) are not comparable",
            path,
            device,
            data.get("device"),
        )
    for cand in new:
        cost = measure(cand.arch)
        data["networks"][cand.name] = cost.to_json()
        data["epochs"][cand.name] = epochs_for(config, cost)
    _add_baselines(data, new_baselines, measure, config)
    if new or new_baselines or not existed:
        atomic_write_json(path, data)
    candidates = list(genotype_candidates)
    for name in config.baselines:
        chosen = data["baselines"][name]["matched"]
        for width in sorted(set(chosen.values())):
            matched = tuple(m.value for m in Match if chosen.get(m.value) == width)
            candidates.append(
                Candidate(f"{name}_w{width:g}", "baseline", name, name, width, matched)
            )
    costs = {c.name: Cost.from_json(data["networks"][c.name]) for c in candidates}
    return (
        candidates,
        costs,
        {c.name: int(data["epochs"][c.name]) for c in candidates},
        data["reference"],
    )


def _add_baselines(
    data: dict[str, Any],
    names: list[str],
    measure: Callable[[str, float, bool], Cost],
    config: CompareConfig,
) -> None:
    """Match each baseline of ``names`` to ``data``'s reference, add its matched widths' costs
    and epochs to ``data`` (``costs.json``'s content)."""
    if not names:
        return
    target = reference_cost(data["reference"], data["networks"])
    for name in names:
        chosen, by_width = match_widths(target, partial(measure, name), config.widths, config.match)
        data["baselines"][name] = {
            "matched": chosen,
            "widths": {f"{w:g}": c.to_json() for w, c in by_width.items()},
        }
        for width in sorted(set(chosen.values())):
            cost = by_width[width]
            if math.isnan(cost.step_seconds):
                cost = measure(name, width, True)
            data["networks"][f"{name}_w{width:g}"] = cost.to_json()
            data["epochs"][f"{name}_w{width:g}"] = epochs_for(config, cost)


def epochs_for(config: CompareConfig, cost: Cost) -> int:
    """Epochs of one run of a network costing ``cost``: the epochs given, or
    ``max(1, floor(time_budget / (steps_per_epoch * step_seconds)))``."""
    if config.epochs is not None:
        return config.epochs
    assert config.time_budget is not None
    return max(1, math.floor(config.time_budget / (config.steps_per_epoch * cost.step_seconds)))
