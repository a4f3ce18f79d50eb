"""``nasmed preprocess TASK_DIR --out WORK_DIR``: fingerprint, plan, cache and splits.

Writes ``WORK_DIR/fingerprint.json``, ``plan.json``, ``cache/`` and ``splits.json`` via
:func:`decathlon.preprocess.run_preprocess`, then prints the plan. Re-running skips the cases
whose source files and plan did not change.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from decathlon.plan import DEFAULT_MEMORY_BUDGET_MB, Plan
from decathlon.preprocess import run_preprocess
from nasmed.cli.common import add_common, add_patch, add_seed, add_task_verb

__all__ = ["format_plan", "register"]


def register(sub: Any) -> None:
    """Add the ``preprocess`` verb to the ``nasmed`` subparsers."""
    p = sub.add_parser(
        "preprocess",
        help="fingerprint a task, plan its preprocessing and cache the preprocessed cases",
        description="Fingerprint TASK_DIR, write WORK_DIR/plan.json, preprocess every training "
        "case into WORK_DIR/cache/ (crop, normalise, resample, nnU-Net style) and write "
        "WORK_DIR/splits.json. Unchanged cases are skipped on a re-run.",
    )
    p.add_argument("task_dir", metavar="TASK_DIR", help="folder holding dataset.json")
    p.add_argument("--out", required=True, metavar="WORK_DIR", help="work folder to write")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    add_patch(p, "patch size, multiples of 16 (default: chosen to fit the memory budget)")
    p.add_argument(
        "--memory-mb",
        type=float,
        default=DEFAULT_MEMORY_BUDGET_MB,
        help=f"training memory budget for the patch size (default {DEFAULT_MEMORY_BUDGET_MB:g})",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        help="cross-validation folds (default 5, fewer for a task of fewer cases, down to 2)",
    )
    add_seed(p)
    add_common(p)
    add_task_verb(p, _preprocess)


def format_plan(plan: Plan, work_dir: str | Path) -> str:
    """The plan summary the verb prints."""
    norms = ", ".join(
        f"{m}: {n.scheme}"
        + (
            f" (clip {n.clip_low:.4g}..{n.clip_high:.4g}, mean {n.mean:.4g}, std {n.std:.4g})"
            if n.scheme == "ct"
            else (" (inside non-zero mask)" if n.use_nonzero_mask else " (per image)")
        )
        for m, n in zip(plan.modalities, plan.normalization, strict=True)
    )
    labels = ", ".join(f"{k} {v}" for k, v in sorted(plan.labels.items()))
    rows = [
        ("task", plan.task_name),
        ("labels", labels),
        ("target spacing", " x ".join(f"{s:.3f}" for s in plan.target_spacing) + " mm"),
        ("median shape", " x ".join(str(s) for s in plan.median_shape_after_resampling)),
        ("normalisation", norms),
        ("patch size", " x ".join(str(s) for s in plan.patch_size)),
        ("batch size", str(plan.batch_size)),
        (
            "memory estimate",
            f"{plan.estimated_memory_mb:.0f} MB of {plan.memory_budget_mb:.0f} MB",
        ),
        *(("note", n) for n in plan.notes),
        ("written", f"{Path(work_dir) / 'plan.json'}, cache/, splits.json, fingerprint.json"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _preprocess(args: argparse.Namespace) -> int:
    plan = run_preprocess(
        args.task_dir,
        args.out,
        workers=args.workers,
        patch_size=tuple(args.patch) if args.patch else None,
        folds=args.folds,
        seed=args.seed,
        memory_budget_mb=args.memory_mb,
        progress=not args.quiet and logging.getLogger().isEnabledFor(logging.INFO),
    )
    print(format_plan(plan, args.out))
    return 0
