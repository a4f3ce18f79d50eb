"""Does the search search? The search-validity protocol of issue 12, on ``nasmed compare``.

1. **Testbed**: a synthetic task where the architecture matters (``write_synthetic_task(...,
   scene=...)``, ``--scene``: ``structures``, thin tubes, hollow spheres labelled filled,
   distractors; or ``context``, thin tubes and shells labelled only when they hold a nucleus;
   80 cases, so fold 0 of 5 validates on 16). ``--random`` genotypes x ``--seeds`` training
   seeds: the cross-seed rank correlation (Spearman) of their Dice must reach 0.6 before
   anything else is claimed.
2. **Kendall tau** between each search run's shared-weight estimate of the random
   architectures (their Dice with the supernet's weights) and their stand-alone Dice.
3. **Search seeds per estimator** (``--estimators``, ``--search-seeds``): how often the found
   genotypes agree (share of candidate edges with the same choice) against the chance agreement
   of random genotypes; each found network's percentile among the random ones and its
   permutation p-value; the final op entropy against its maximum.
4. **Best-of-N random search at equal compute**: N = one search's seconds / one training run's
   seconds; the expected best of N of the trained random networks against the found ones.

Every network is trained by one :func:`nasmed.compare.run_compare` call (same fold, budget,
optimiser, patch; baselines matched on parameters, FLOPs and step time). Searches and runs
already in ``--out`` are reused, so a re-run only does what is missing. Estimators are passed to
``SearchConfig(estimator=...)`` when this nasmed has that field; ``default`` means the search's
default; search folders made elsewhere can be added with ``--search-run NAME=RUN_DIR``;
``--train-found gdas`` trains only that estimator's found networks stand-alone (the others
still count for entropy, agreement and Kendall tau).

    .venv/bin/python benchmarks/search_validity.py                 # the protocol (hours on CPU)
    .venv/bin/python benchmarks/search_validity.py --quick         # smoke run, ~2 min

Prints the tables and the targets (met / not met) and writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import searchspaces
from decathlon.fsutil import atomic_write_json
from decathlon.synthetic import write_synthetic_task
from nasmed.compare import CompareConfig, run_compare, stats
from nasmed.genotype import Genotype
from nasmed.search.config import SearchConfig
from nasmed.search.loop import run_search
from nasmed.train.history import read_history

TARGETS = {
    "testbed": "cross-seed rank correlation of the random networks >= 0.6",
    "entropy": "final op entropy <= half its maximum",
    "agreement": "search seeds agree >= 2x chance",
    "percentile": "found >= 90th percentile of random with p <= 0.1",
    "best_of_n": "found >= best-of-N random search at equal compute",
    "kendall": "Kendall tau (supernet estimate vs stand-alone) >= 0.3",
    "baseline": "found >= best baseline at matched step time",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench_out/search_validity"))
    p.add_argument("--space", default="scnas-small")
    p.add_argument("--cases", type=int, default=80, help="testbed cases (16 validate at 5 folds)")
    p.add_argument("--shape", type=int, nargs=3, default=[32, 32, 32])
    p.add_argument(
        "--scene", default="structures", choices=["structures", "context"], help="testbed scene"
    )
    p.add_argument("--patch", type=int, nargs=3, default=[24, 24, 24])
    p.add_argument("--random", type=int, default=12)
    p.add_argument("--seeds", type=int, default=2, help="training seeds per network")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--baselines", nargs="*", default=["unet", "dynunet"])
    p.add_argument("--widths", type=float, nargs="+", default=None)
    p.add_argument("--estimators", nargs="+", default=["default"])
    p.add_argument(
        "--train-found",
        nargs="*",
        default=None,
        metavar="ESTIMATOR",
        help="train stand-alone only these estimators' found networks (default: all); the "
        "others still count for entropy, agreement and Kendall tau",
    )
    p.add_argument("--search-seeds", type=int, default=3)
    p.add_argument("--search-epochs", type=int, default=40)
    p.add_argument("--search-warmup", type=int, default=10)
    p.add_argument("--search-steps", type=int, default=25)
    p.add_argument(
        "--search-run",
        action="append",
        default=[],
        metavar="ESTIMATOR=RUN_DIR",
        help="a finished search made elsewhere, counted under ESTIMATOR",
    )
    p.add_argument("--timing-steps", type=int, default=3, help="per step-time measurement")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--jobs", type=int, default=1, help="training runs at once (nasmed compare --jobs)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--amp", action="store_true", help="searches and training under autocast (bf16 on CPU)"
    )
    p.add_argument("--quick", action="store_true", help="tiny budget: checks the script runs")
    args = p.parse_args(argv)
    if args.quick:
        side = _smallest_side(args.space)
        args.cases, args.shape, args.patch = 10, [side] * 3, [side] * 3
        args.timing_steps = 1
        args.random, args.seeds, args.epochs, args.steps = 4, 2, 1, 2
        args.search_seeds, args.search_epochs, args.search_warmup, args.search_steps = 2, 2, 1, 2
        args.widths = args.widths or [0.25, 0.5]
    return args


def _smallest_side(space_name: str) -> int:
    """The smallest cubic patch, from 16 in steps of 8, that the space can train (--quick)."""
    space = searchspaces.load(space_name)
    for side in range(16, 129, 8):
        try:
            space.check_patch((side, side, side))
        except searchspaces.SpaceError:
            continue
        return side
    return 128


def _search_config(args: argparse.Namespace, estimator: str, seed: int) -> SearchConfig | None:
    base = SearchConfig(
        space=args.space,
        epochs=args.search_epochs,
        warmup_epochs=args.search_warmup,
        steps_per_epoch=args.search_steps,
        patch=tuple(args.patch),
        batch_size=2,
        weight_optimizer=args.optimizer,
        weight_lr=args.lr,
        val_every=args.search_epochs,
        seed=seed,
        amp=True if args.amp else None,
    )
    if estimator == "default":
        return base
    if "estimator" not in {f.name for f in dataclasses.fields(SearchConfig)}:
        return None  # this nasmed has no estimator option yet
    return dataclasses.replace(base, estimator=estimator)  # type: ignore[arg-type]


def _searches(args: argparse.Namespace, task: Path) -> dict[str, list[dict[str, Any]]]:
    """Run (or reuse) every search; per estimator the runs with their cost and entropy."""
    space = searchspaces.load(args.space)
    out: dict[str, list[dict[str, Any]]] = {}
    for estimator in args.estimators:
        for seed in range(args.search_seeds):
            config = _search_config(args, estimator, seed)
            if config is None:
                print(
                    f"estimator {estimator!r}: SearchConfig has no 'estimator'; skipped "
                    "(pass --search-run to add runs made elsewhere)",
                    file=sys.stderr,
                )
                break
            run = args.out / "search" / estimator / f"seed{seed}"
            cost_file = run.with_name(f"seed{seed}.seconds.json")
            start = time.perf_counter()
            run_search(task, run, config, resume=run.is_dir(), device=args.device,
                       work_dir=args.out / "work", progress=False)  # fmt: skip
            if not cost_file.is_file():
                atomic_write_json(cost_file, {"seconds": time.perf_counter() - start})
            out.setdefault(estimator, []).append(_search_info(run, cost_file, space))
    for spec in args.search_run:
        estimator, _, path = spec.partition("=")
        run = Path(path)
        out.setdefault(estimator, []).append(_search_info(run, None, space))
    return out


def _search_info(run: Path, cost_file: Path | None, space: Any) -> dict[str, Any]:
    rows = read_history(run / "history.csv")
    seconds = (
        json.loads(cost_file.read_text())["seconds"]
        if cost_file is not None
        else sum(float(r.get("seconds") or 0) for r in rows)
    )
    return {
        "run": str(run),
        "seconds": seconds,
        "entropy_ops": rows[-1].get("entropy_ops") if rows else None,
        "entropy_max": math.log(len(space.ops)),
    }


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def evaluate(result: Any, searches: dict[str, list[dict[str, Any]]], space: Any) -> dict[str, Any]:
    """The protocol's numbers and targets from a comparison and the searches behind it."""
    rows = {r["name"]: r for r in result.rows}
    randoms = [r["dice_mean"] for r in result.rows if r["kind"] == "random"]
    train_s = statistics.fmean(
        r["train_seconds"] for r in result.rows if r["kind"] == "random" and r["train_seconds"]
    )
    step_baseline = result.summary["best_matched_baseline"].get("step_time")
    rho = result.summary["cross_seed_rank_correlation"]
    found_by_run = {
        str(Path(r["source"]).resolve().parent): r for r in result.rows if r["kind"] == "found"
    }
    chance = stats.chance_agreement(space).edges
    out: dict[str, Any] = {
        "testbed": {"rank_correlation": rho, "met": rho is not None and rho >= 0.6}
    }
    out["estimators"] = {}
    for estimator, runs in searches.items():
        found = [
            found_by_run[str(Path(r["run"]).resolve())]
            for r in runs
            if str(Path(r["run"]).resolve()) in found_by_run
        ]
        genotypes = [Genotype.load(Path(r["run"]) / "genotype.json") for r in runs]
        n = max(1, round(statistics.fmean(r["seconds"] for r in runs) / train_s))
        best_of_n = stats.expected_best_of_n(randoms, n)
        pairwise = stats.mean_pairwise_agreement(genotypes, space) if len(runs) > 1 else None
        agree = pairwise.edges if pairwise is not None else None
        paths = {str(Path(r["run"]).resolve()) for r in runs}
        taus = [
            k["tau"]
            for k in result.summary["kendall_tau"].values()
            if k.get("path") in paths and k["tau"] is not None
        ]
        ent = [r["entropy_ops"] / r["entropy_max"] for r in runs if r["entropy_ops"] is not None]
        out["estimators"][estimator] = {
            "found": [
                {k: f[k] for k in ("name", "dice_mean", "dice_sd", "percentile", "p_value")}
                for f in found
            ],
            "entropy_fraction": ent,
            "agreement": agree,
            "chance": chance,
            "op_agreement": None if pairwise is None else pairwise.ops,
            "op_chance": stats.chance_agreement(space).ops,
            "input_agreement": None if pairwise is None else pairwise.inputs,
            "input_chance": stats.chance_agreement(space).inputs,
            "n_equal_compute": n,
            "best_of_n": best_of_n,
            "kendall_tau": taus,
            "best_step_baseline": step_baseline,
            "targets": {
                "entropy": bool(ent) and max(ent) <= 0.5,
                "agreement": None if agree is None else agree >= 2 * chance,
                "percentile": None
                if not found
                else all(f["percentile"] >= 90 and f["p_value"] <= 0.1 for f in found),
                "best_of_n": None if not found else all(f["dice_mean"] >= best_of_n for f in found),
                "kendall": (statistics.fmean(taus) >= 0.3) if taus else None,
                "baseline": None
                if step_baseline is None or not found
                else all(f["dice_mean"] >= step_baseline["dice_mean"] for f in found),
            },
        }
    out["networks"] = {
        k: {c: v[c] for c in ("kind", "dice_mean", "dice_sd", "params")} for k, v in rows.items()
    }
    return out


def report(results: dict[str, Any], table: list[dict[str, Any]]) -> str:
    """Markdown: the networks, then the targets per estimator."""
    lines = [
        "| network | kind | Dice mean ± sd | params | GFLOP | s/step | pct | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    f = lambda v, s=".3f": "-" if v is None else format(v, s)  # noqa: E731
    for r in table:
        lines.append(
            f"| {r['name']} | {r['kind']} | {f(r['dice_mean'])} ± {f(r['dice_sd'])} | "
            f"{r['params']:,} | {r['gflops']:.2f} | {f(r['step_seconds'])} | "
            f"{f(r['percentile'], '.0f')} | {f(r['p_value'])} |"
        )
    tb = results["testbed"]
    lines += [
        "",
        f"Testbed: cross-seed rank correlation {f(tb['rank_correlation'])} ({TARGETS['testbed']}: "
        f"{_met(tb['met'])})"
        + ("" if tb["met"] else " -- the ranking is not stable: the targets below prove nothing"),
        "",
        "| estimator | target | value | status |",
        "|---|---|---|---|",
    ]
    for est, e in results["estimators"].items():
        t = e["targets"]
        values = {
            "entropy": ", ".join(f"{x:.2f}" for x in e["entropy_fraction"]) + " of max",
            "agreement": f"edges {f(e['agreement'])} vs chance {e['chance']:.3f}; ops of shared "
            f"edges {f(e['op_agreement'])} vs {e['op_chance']:.3f}; inputs "
            f"{f(e['input_agreement'])} vs {e['input_chance']:.3f}",
            "percentile": ", ".join(
                f"{x['percentile']:.0f}th (p {x['p_value']:.2f})" for x in e["found"]
            )
            or "not trained",
            "best_of_n": f"found {', '.join(f(x['dice_mean']) for x in e['found'])} vs best of "
            f"N={e['n_equal_compute']}: {e['best_of_n']:.3f}",
            "kendall": ", ".join(f"{x:.2f}" for x in e["kendall_tau"]) or "-",
            "baseline": "-"
            if e["best_step_baseline"] is None
            else f"{e['best_step_baseline']['best']} {e['best_step_baseline']['dice_mean']:.3f}",
        }
        for key, text in values.items():
            lines.append(f"| {est} | {TARGETS[key]} | {text} | {_met(t[key])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    task = args.out / "testbed"
    if not (task / "dataset.json").is_file():
        write_synthetic_task(task, cases=args.cases, shape=tuple(args.shape), scene=args.scene,
                             seed=12, test_cases=0)  # fmt: skip
    made = json.loads((task / "dataset.json").read_text()).get("nasmed_synthetic", {})
    wanted = {"scene": args.scene, "shape": list(args.shape), "cases": args.cases}
    if any(made.get(k) != v for k, v in wanted.items()):
        had = {k: made.get(k) for k in wanted}
        print(f"{task}: the testbed there was written with {had}, not {wanted}", file=sys.stderr)
        return 2
    searches = _searches(args, task)
    space = searchspaces.load(args.space)
    runs = [Path(r["run"]) for rs in searches.values() for r in rs]
    trained = [
        Path(r["run"])
        for est, rs in searches.items()
        if args.train_found is None or est in args.train_found
        for r in rs
    ]
    config = CompareConfig(
        out=args.out / "compare",
        archs=tuple(r / "genotype.json" for r in trained),
        random=args.random,
        baselines=tuple(args.baselines),
        seeds=args.seeds,
        epochs=args.epochs,
        search_runs=tuple(runs),
        space=args.space,
        patch=tuple(args.patch),
        steps_per_epoch=args.steps,
        optimizer=args.optimizer,
        lr=args.lr,
        timing_steps=args.timing_steps,
        device=args.device,
        amp=True if args.amp else None,
        resume=(args.out / "compare" / "run.json").is_file(),
        progress=sys.stderr.isatty(),
        jobs=args.jobs,
    )
    if args.widths:
        config = dataclasses.replace(config, widths=tuple(args.widths))
    result = run_compare(task, config)
    results = evaluate(result, searches, space)
    results["searches"] = searches
    results["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["seconds"] = time.perf_counter() - t0
    atomic_write_json(args.out / "results.json", results)
    print(report(results, list(result.rows)))
    print(f"\ntotal {results['seconds']:.0f} s; {result.csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
