"""Measured costs, the baselines' matched widths and each network's epochs: ``costs.json``.

:func:`plan_costs` measures every genotype network (:func:`~nasmed.compare.costs.measure_cost`),
matches each baseline's width to the reference network (the first found one, else the random
networks' median) on each criterion, and fixes every network's epochs (:func:`epochs_for`). It
writes ``OUT/costs.json`` once and reads it back on resume, so a resumed comparison trains the
same widths for the same budgets.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from decathlon.fsutil import atomic_write_json
from decathlon.plan import Plan
from nasmed.compare.candidates import Candidate
from nasmed.compare.config import CompareConfig, Match
from nasmed.compare.costs import Cost, match_widths, measure_cost
from nasmed.genotype import Genotype

__all__ = ["COSTS_FILE", "epochs_for", "plan_costs"]

COSTS_FILE = "costs.json"


def plan_costs(
    out: Path,
    config: CompareConfig,
    plan: Plan,
    patch: tuple[int, int, int],
    genotype_candidates: list[Candidate],
    device: torch.device,
) -> tuple[list[Candidate], dict[str, Cost], dict[str, int], str | None]:
    """Measure (or reload) every cost, match the baselines, fix each network's epochs.

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

    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        # networks added on resume (``--arch`` given anew): measured now, appended; the
        # reference and the baselines' widths stay those of the first start
        new = [c for c in genotype_candidates if c.name not in data["networks"]]
        for cand in new:
            cost = measure(cand.arch)
            data["networks"][cand.name] = cost.to_json()
            data["epochs"][cand.name] = epochs_for(config, cost)
        if new:
            atomic_write_json(path, data)
    else:
        networks = {c.name: measure(c.arch).to_json() for c in genotype_candidates}
        if genotype_candidates and genotype_candidates[0].kind == "found":
            reference = genotype_candidates[0].name
            target = Cost.from_json(networks[reference])
        else:
            reference = "median of the random networks"
            values = [Cost.from_json(v) for v in networks.values()]
            target = Cost(
                int(statistics.median(c.params for c in values)),
                statistics.median(c.flops for c in values),
                statistics.median(c.step_seconds for c in values),
            )
        baselines: dict[str, Any] = {}
        for name in config.baselines:

            def measure_baseline(width: float, timed: bool, name: str = name) -> Cost:
                return measure(name, width, timed)

            chosen, by_width = match_widths(target, measure_baseline, config.widths, config.match)
            baselines[name] = {
                "matched": chosen,
                "widths": {f"{w:g}": c.to_json() for w, c in by_width.items()},
            }
            for width in sorted(set(chosen.values())):
                cost = by_width[width]
                if math.isnan(cost.step_seconds):
                    cost = measure(name, width)
                networks[f"{name}_w{width:g}"] = cost.to_json()
        data = {
            "patch": list(patch),
            "device": str(device),
            "reference": reference,
            "networks": networks,
            "baselines": baselines,
        }
        data["epochs"] = {
            name: epochs_for(config, Cost.from_json(cost)) for name, cost in networks.items()
        }
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


def epochs_for(config: CompareConfig, cost: Cost) -> int:
    """Epochs of one run of a network costing ``cost``: the epochs given, or
    ``max(1, floor(time_budget / (steps_per_epoch * step_seconds)))``."""
    if config.epochs is not None:
        return config.epochs
    assert config.time_budget is not None
    return max(1, math.floor(config.time_budget / (config.steps_per_epoch * cost.step_seconds)))
