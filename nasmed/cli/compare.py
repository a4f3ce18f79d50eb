"""Verb ``compare``: was the search worth it? Found vs random vs matched baselines.

Builds a :class:`~nasmed.compare.CompareConfig` from the options and calls
:func:`~nasmed.compare.run_compare`; prints the table and the statistics.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from nasmed.cli.common import (
    add_amp,
    add_common,
    add_cpu_allocator,
    add_device,
    add_patch,
    add_seed,
)
from nasmed.models.names import BASELINES

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``compare`` verb."""
    from nasmed.compare.config import DEFAULT_WIDTHS, Match

    p = sub.add_parser(
        "compare",
        help="train found, random and baseline networks alike; percentiles, p, Kendall tau",
        description="Train every network (each --arch, --random genotypes of the same space, the "
        "baselines at widths matched on parameters, FLOPs and step time) on the same fold with "
        "the same budget, for each seed; write OUT/compare.csv, compare.json and compare.png.",
    )
    p.add_argument("task", metavar="TASK_DIR", help="MSD or nnU-Net raw task folder")
    p.add_argument(
        "--arch",
        action="append",
        default=[],
        metavar="GENOTYPE",
        help="a found genotype.json (or its search run folder); repeatable",
    )
    p.add_argument("--random", type=int, default=8, help="random genotypes (default 8)")
    p.add_argument(
        "--baselines",
        nargs="*",
        default=list(BASELINES),
        choices=list(BASELINES),
        help="baseline networks (default: unet dynunet; none: give the option alone)",
    )
    p.add_argument("--seeds", type=int, default=2, help="training seeds per network (default 2)")
    budget = p.add_argument_group("budget (one of)")
    budget.add_argument("--epochs", type=int, default=None, help="epochs per run")
    budget.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds of training steps per run (epochs from each network's measured step time)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="comparison folder to write")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue; finished runs are skipped (--arch, --search-run and --baselines may "
        "add entries after the recorded ones)",
    )
    p.add_argument(
        "--search-run",
        action="append",
        default=[],
        metavar="RUN_DIR",
        help="search run folder: its supernet's shared-weight estimate of each genotype "
        "(Kendall tau) and its genotype (agreement); repeatable",
    )
    p.add_argument("--space", default="scnas", help="space of the random genotypes without --arch")
    p.add_argument(
        "--match",
        nargs="+",
        default=[m.value for m in Match],
        choices=[m.value for m in Match],
        help="what the baselines' widths match (default: all three)",
    )
    p.add_argument(
        "--widths",
        type=float,
        nargs="+",
        default=list(DEFAULT_WIDTHS),
        help="baseline widths tried for the matching",
    )
    add_patch(p, "training patch (default: the plan's, fitted to every network)")
    p.add_argument("--steps", type=int, default=250, help="steps per epoch (default 250)")
    p.add_argument("--batch", type=int, default=2, help="patches per step (default 2)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="default sgd")
    p.add_argument("--lr", type=float, default=None, help="learning rate (sgd 1e-2, adamw 3e-4)")
    p.add_argument("--fold", type=int, default=0, help="validation fold (default 0)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument(
        "--timing-steps", type=int, default=3, help="timed steps per step-time measurement"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="training runs at once, each in its own process with 1/N of the threads (default 1)",
    )
    add_amp(p, "on with CUDA; bfloat16 autocast on a CPU with --amp")
    add_seed(p)
    add_device(p)
    add_cpu_allocator(p, "cache")
    add_common(p)
    p.set_defaults(func=_compare)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _compare(args: argparse.Namespace) -> int:
    from nasmed.compare import CompareConfig, run_compare

    config = CompareConfig(
        out=Path(args.out),
        archs=tuple(Path(a) for a in args.arch),
        random=args.random,
        baselines=tuple(args.baselines),
        seeds=args.seeds,
        epochs=args.epochs,
        time_budget=args.time_budget,
        search_runs=tuple(Path(r) for r in args.search_run),
        space=args.space,
        match=tuple(args.match),
        widths=tuple(args.widths),
        patch=tuple(args.patch) if args.patch else None,
        steps_per_epoch=args.steps,
        batch_size=args.batch,
        optimizer=args.optimizer,
        lr=args.lr,
        fold=args.fold,
        folds=args.folds,
        seed=args.seed,
        timing_steps=args.timing_steps,
        device=args.device,
        amp=args.amp,
        resume=args.resume,
        jobs=args.jobs,
        progress=not args.quiet and logging.getLogger().isEnabledFor(logging.INFO),
    )
    result = run_compare(args.task, config)
    print(
        f"{'network':<22} {'kind':<8} {'Dice mean ± sd':>16} {'params':>10} {'GFLOP':>8} "
        f"{'s/step':>7} {'pct':>5} {'p':>6}"
    )
    for r in result.rows:
        print(
            f"{r['name']:<22} {r['kind']:<8} {_fmt(r['dice_mean']):>8} ± {_fmt(r['dice_sd']):<5} "
            f"{r['params']:>10,} {r['gflops']:>8.2f} {_fmt(r['step_seconds']):>7} "
            f"{_fmt(r['percentile'], '.0f'):>5} {_fmt(r['p_value']):>6}"
        )
    s = result.summary
    print(
        "cross-seed rank correlation of the random networks: "
        f"{_fmt(s['cross_seed_rank_correlation'])}"
    )
    for name, k in s["kendall_tau"].items():
        print(
            f"Kendall tau, supernet {name} vs stand-alone: {_fmt(k['tau'])} "
            f"(p {_fmt(k['p'])}, n {k['n']})"
        )
    if s["agreement"] is not None:
        a = s["agreement"]
        print(
            f"agreement of {len(a['genotypes'])} genotypes: {a['edges']:.3f} of edges "
            f"(chance {a['chance_edges']:.3f}, {a['ratio_to_chance']:.2f}x)"
        )
    print(
        f"trained {result.trained} run(s), reused {result.skipped}; wrote {result.csv_path}, "
        f"{result.json_path}, {result.png_path}"
    )
    return 0
