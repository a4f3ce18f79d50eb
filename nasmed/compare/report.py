"""The comparison's table and summary: one row per network, the statistics, ``compare.csv`` and
``compare.json`` (both written atomically).

Columns of ``compare.csv`` (one row per network; empty where a value does not apply)::

    name, kind, source, width, matched, params, gflops, step_seconds, epochs, seeds,
    dice_mean, dice_sd, dice_min, dice_max, dice_seed<k>..., train_seconds,
    supernet_<search run>..., percentile, p_value

``percentile`` and ``p_value`` are filled for found networks (against the random ones; see
:mod:`nasmed.compare.stats` for the null hypothesis). ``compare.json`` holds the rows, the
summary (random spread, each found network's rank, the matched baselines, Kendall tau per
search run, agreement of the genotypes against chance, the cross-seed rank correlation) and the
settings.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_write_json, atomic_write_text
from nasmed.compare import stats
from nasmed.compare.candidates import Candidate
from nasmed.compare.costs import Cost
from nasmed.genotype import Genotype
from searchspaces import SearchSpace

__all__ = ["NULL_HYPOTHESIS", "RunResult", "build_rows", "summarize", "write_csv", "write_json"]

NULL_HYPOTHESIS = (
    "the found network's mean Dice over seeds is exchangeable with the random networks' means "
    "(it is one more uniform draw from the space); p = (1 + #random >= found) / (1 + K)"
)


@dataclass(frozen=True)
class RunResult:
    """One finished training run.

    Attributes:
        seed: the training seed.
        dice: final validation Dice.
        epochs: epochs trained.
        seconds_per_epoch: mean wall time of an epoch.
        run_dir: the run folder.
    """

    seed: int
    dice: float
    epochs: int
    seconds_per_epoch: float
    run_dir: Path


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return {"mean": None, "sd": None, "min": None, "max": None}
    return {
        "mean": statistics.fmean(vals),
        "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
    }


def build_rows(
    candidates: Sequence[Candidate],
    costs: Mapping[str, Cost],
    epochs: Mapping[str, int],
    results: Mapping[str, Sequence[RunResult]],
    estimates: Mapping[str, Mapping[str, float]],
) -> list[dict[str, Any]]:
    """One row per candidate (see the module docstring for the columns).

    Args:
        candidates: the networks.
        costs: measured cost per network name.
        epochs: epochs per run per network name.
        results: the finished runs per network name.
        estimates: ``{search run name: {network name: shared-weight Dice}}``.
    """
    rows: list[dict[str, Any]] = []
    for cand in candidates:
        runs = sorted(results.get(cand.name, ()), key=lambda r: r.seed)
        spread = _spread([r.dice for r in runs])
        cost = costs[cand.name]
        row: dict[str, Any] = {
            "name": cand.name,
            "kind": cand.kind,
            "source": cand.source,
            "width": cand.width,
            "matched": "+".join(cand.matched),
            "params": cost.params,
            "gflops": cost.flops / 1e9,
            "step_seconds": _clean(cost.step_seconds),
            "epochs": epochs[cand.name],
            "seeds": len(runs),
            "dice_mean": spread["mean"],
            "dice_sd": spread["sd"],
            "dice_min": spread["min"],
            "dice_max": spread["max"],
        }
        for r in runs:
            row[f"dice_seed{r.seed}"] = _clean(r.dice)
        row["train_seconds"] = (
            statistics.fmean(r.seconds_per_epoch * r.epochs for r in runs) if runs else None
        )
        for run_name, values in estimates.items():
            row[f"supernet_{run_name}"] = _clean(values.get(cand.name))
        row["percentile"] = None
        row["p_value"] = None
        rows.append(row)
    randoms = [r["dice_mean"] for r in rows if r["kind"] == "random" and r["dice_mean"] is not None]
    for row in rows:
        if row["kind"] == "found" and randoms and row["dice_mean"] is not None:
            row["percentile"] = stats.percentile(row["dice_mean"], randoms)
            row["p_value"] = stats.permutation_p(row["dice_mean"], randoms)
    return rows


def summarize(
    rows: Sequence[Mapping[str, Any]],
    *,
    space: SearchSpace,
    genotypes: Mapping[str, Genotype],
    estimates: Mapping[str, Mapping[str, float]],
    reference: str | None,
) -> dict[str, Any]:
    """The statistics of a comparison.

    Args:
        rows: :func:`build_rows`'s rows.
        space: the compared space.
        genotypes: the genotypes whose agreement is measured (found networks and search runs'
            results), by name.
        estimates: the shared-weight estimates, as for :func:`build_rows`.
        reference: the network the baselines are matched to.
    """
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_kind.setdefault(str(row["kind"]), []).append(row)
    random_rows = by_kind.get("random", [])
    random_means = [r["dice_mean"] for r in random_rows if r["dice_mean"] is not None]
    summary: dict[str, Any] = {"null_hypothesis": NULL_HYPOTHESIS, "reference": reference}
    summary["random"] = {"count": len(random_rows), **_spread(random_means)}
    if random_means:
        summary["random"]["median"] = statistics.median(random_means)
    seeds = sorted(
        {int(k[len("dice_seed") :]) for r in random_rows for k in r if k.startswith("dice_seed")}
    )
    per_seed = [[_number(r.get(f"dice_seed{s}")) for r in random_rows] for s in seeds]
    summary["cross_seed_rank_correlation"] = _clean(stats.cross_seed_rank_correlation(per_seed))
    summary["found"] = {
        str(r["name"]): {
            "dice_mean": r["dice_mean"],
            "percentile": r["percentile"],
            "p_value": r["p_value"],
        }
        for r in by_kind.get("found", [])
    }
    baselines: dict[str, Any] = {}
    for criterion in ("params", "flops", "step_time"):
        matched = [
            r
            for r in by_kind.get("baseline", [])
            if criterion in str(r["matched"]).split("+") and r["dice_mean"] is not None
        ]
        if matched:
            best = max(matched, key=lambda r: float(r["dice_mean"]))
            baselines[criterion] = {"best": best["name"], "dice_mean": best["dice_mean"]}
    summary["best_matched_baseline"] = baselines
    kendall: dict[str, Any] = {}
    for run_name, values in estimates.items():
        pairs = [
            (float(values[r["name"]]), float(r["dice_mean"]))
            for r in random_rows
            if r["name"] in values and r["dice_mean"] is not None
        ]
        tau, p = stats.kendall_tau([a for a, _ in pairs], [b for _, b in pairs])
        kendall[run_name] = {"tau": _clean(tau), "p": _clean(p), "n": len(pairs)}
    summary["kendall_tau"] = kendall
    if len(genotypes) >= 2:
        got = stats.mean_pairwise_agreement(list(genotypes.values()), space)
        chance = stats.chance_agreement(space)
        summary["agreement"] = {
            "genotypes": list(genotypes),
            "edges": got.edges,
            "inputs": got.inputs,
            "ops": _clean(got.ops),
            "chance_edges": chance.edges,
            "chance_inputs": chance.inputs,
            "chance_ops": chance.ops,
            "ratio_to_chance": got.edges / chance.edges,
        }
    else:
        summary["agreement"] = None
    return summary


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    seeds = sorted((c for c in columns if c.startswith("dice_seed")), key=lambda c: int(c[9:]))
    rest = [c for c in columns if not c.startswith("dice_seed")]
    at = rest.index("train_seconds") if "train_seconds" in rest else len(rest)
    return rest[:at] + seeds + rest[at:]


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write the rows as ``compare.csv`` (atomically)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v))
                for k, v in row.items()
            }
        )
    atomic_write_text(path, buf.getvalue())
    return path


def write_json(
    path: Path, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], settings: Any
) -> Path:
    """Write rows, summary and settings as ``compare.json`` (atomically)."""
    atomic_write_json(
        path, {"settings": settings, "summary": dict(summary), "networks": [dict(r) for r in rows]}
    )
    return path
