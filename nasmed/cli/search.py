"""Verbs ``search`` (architecture search on a task) and ``demo`` (the whole path on the embedded
synthetic task).

``search`` calls :func:`nasmed.search.loop.run_search`, ``demo`` calls
:func:`nasmed.demo.run_demo`; both print the found genotype and where the outputs are. Bad input
is one line on stderr and exit status 2, with nothing half-written.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from nasmed.cli.common import (
    add_common,
    add_cpu_allocator,
    add_device,
    add_patch,
    add_precision,
    add_seed,
    add_task_verb,
    precision_options,
)
from nasmed.errors import ConfigError

#: ``SearchConfig``'s defaults of the options below (kept torch-free here; a test checks them).
DEFAULTS: dict[str, Any] = {
    "estimator": "gdas",
    "entropy_weight": 4.0,
    "temperature": "linear",
    "tau_start": 1.0,
    "tau_end": 1.0,
    "arch_lr": 0.05,
    "arch_weight_decay": 0.0,
}
ESTIMATORS = ("gdas", "proxyless", "reinforce")

__all__ = ["register"]


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and logging.getLogger().isEnabledFor(logging.INFO)


def register(sub: Any) -> None:
    """Add the ``search`` and ``demo`` verbs to the ``nasmed`` subparsers."""
    p = sub.add_parser(
        "search",
        help="search an encoder-decoder architecture for a task (bilevel, Gumbel sampling)",
        description="Search a 3D encoder-decoder architecture for an MSD task: warm-up epochs "
        "on the weights, then alternating weights / architecture updates on the two halves of "
        "fold 0's training cases, validating the argmax architecture on its validation cases. "
        "Writes RUN_DIR/genotype.json (last), history.csv, tensorboard/, alphas/ (logit "
        "snapshots) and checkpoint.pt (resume point).",
    )
    p.add_argument(
        "task",
        nargs="?",
        default=None,
        metavar="TASK_DIR",
        help="MSD or nnU-Net raw task folder (default: the embedded synthetic task)",
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--space", default="scnas", help="search space name or YAML (default scnas)")
    p.add_argument("--epochs", type=int, default=50, help="epochs in all (default 50)")
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="weights-only epochs at the start (default: a fifth of --epochs)",
    )
    p.add_argument("--steps", type=int, default=100, help="steps per epoch (default 100)")
    add_patch(p, "training patch (default: the space's default patch)")
    add_precision(p, "off")
    p.add_argument("--batch", type=int, default=2, help="patches per step (default 2)")
    p.add_argument(
        "--mode",
        choices=("sampled", "mixed"),
        default="sampled",
        help="sampled: hard Gumbel samples, only sampled ops run (default); mixed: DARTS",
    )
    p.add_argument(
        "--estimator",
        choices=ESTIMATORS,
        default=DEFAULTS["estimator"],
        help="architecture gradient: gdas (straight-through Gumbel), proxyless (binary gates "
        "over two sampled ops), reinforce (score function, forward only) "
        f"(default {DEFAULTS['estimator']}; docs/search.md compares them)",
    )
    p.add_argument(
        "--entropy-weight",
        type=float,
        default=DEFAULTS["entropy_weight"],
        help="final weight of the entropy term that makes the search decide, ramped up from 0 "
        f"over the search epochs (default {DEFAULTS['entropy_weight']:g}; 0: none)",
    )
    p.add_argument(
        "--temperature",
        choices=("linear", "exponential"),
        default=DEFAULTS["temperature"],
        help=f"gdas temperature annealing per epoch (default {DEFAULTS['temperature']})",
    )
    p.add_argument(
        "--tau-start",
        type=float,
        default=DEFAULTS["tau_start"],
        help=f"first gdas temperature (default {DEFAULTS['tau_start']:g})",
    )
    p.add_argument(
        "--tau-end",
        type=float,
        default=DEFAULTS["tau_end"],
        help=f"last gdas temperature (default {DEFAULTS['tau_end']:g})",
    )
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="weights' (sgd)")
    p.add_argument("--lr", type=float, default=None, help="weights' lr (sgd 1e-2, adamw 1e-3)")
    p.add_argument(
        "--arch-lr",
        type=float,
        default=DEFAULTS["arch_lr"],
        help=f"architecture lr (default {DEFAULTS['arch_lr']:g})",
    )
    p.add_argument(
        "--arch-weight-decay",
        type=float,
        default=DEFAULTS["arch_weight_decay"],
        help="decoupled (AdamW) weight decay of the architecture logits "
        f"(default {DEFAULTS['arch_weight_decay']:g})",
    )
    p.add_argument(
        "--cost-budget",
        default=None,
        metavar="METRIC=VALUE",
        help="cost-aware search: budget on the sampled child's expected params, flops or "
        "memory (activation bytes), e.g. memory=2G, params=1.5M (suffixes k M G T)",
    )
    p.add_argument(
        "--cost-weight", type=float, default=1.0, help="weight of the cost term (default 1)"
    )
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (default 1)")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (default 1)")
    p.add_argument(
        "--work-dir", default=None, help="preprocessing folder to (re)use (default RUN_DIR/work)"
    )
    p.add_argument("--workers", type=int, default=0, help="loader processes per half (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the search in RUN_DIR")
    p.add_argument(
        "--time-budget", type=float, default=None, metavar="SECONDS", help="stop in time"
    )
    p.add_argument("--no-augment", action="store_true", help="no augmentation in weight steps")
    _add_threads(p, None)
    add_seed(p)
    add_device(p)
    add_cpu_allocator(p, "lean")
    add_common(p)
    add_task_verb(p, _search)

    p = sub.add_parser(
        "demo",
        help="the whole path on the embedded synthetic task, in a few minutes on a CPU",
        description="Write the embedded synthetic task (once), search an architecture for it "
        "(space scnas-small, 32^3 patches, a few epochs) and print the genotype and where the "
        "outputs are. Running it again on the same folder reuses the finished search.",
    )
    p.add_argument("--out", default="demo_out", help="demo folder (default demo_out)")
    _add_threads(p, 1)
    add_seed(p)
    add_device(p)
    add_cpu_allocator(p, "cache")
    add_common(p)
    p.set_defaults(func=_demo)


def _add_threads(p: argparse.ArgumentParser, default: int | None) -> None:
    what = "torch's choice" if default is None else str(default)
    p.add_argument(
        "--threads",
        type=int,
        default=default,
        metavar="N",
        help=f"torch CPU threads (default {what}; on a shared or busy machine 1 is often "
        "fastest: oversubscribed threads spin)",
    )


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)


def _search(args: argparse.Namespace) -> int:
    from nasmed.search.loop import SearchConfig, parse_cost_budget, run_search
    from nasmed.train.augment import AugmentConfig

    _set_threads(args)
    cost = (
        parse_cost_budget(args.cost_budget, args.cost_weight)
        if args.cost_budget is not None
        else None
    )
    config = SearchConfig(
        space=args.space,
        epochs=args.epochs,
        warmup_epochs=args.warmup if args.warmup is not None else args.epochs // 5,
        steps_per_epoch=args.steps,
        patch=tuple(args.patch) if args.patch else None,
        batch_size=args.batch,
        mode=args.mode,
        estimator=args.estimator,
        entropy_weight=args.entropy_weight,
        temperature=args.temperature,
        tau_start=args.tau_start,
        tau_end=args.tau_end,
        weight_optimizer=args.optimizer,
        weight_lr=args.lr,
        arch_lr=args.arch_lr,
        arch_weight_decay=args.arch_weight_decay,
        cost=cost,
        width=args.width,
        val_every=args.val_every,
        workers=args.workers,
        seed=args.seed,
        augment=AugmentConfig(enabled=not args.no_augment),
        time_budget=args.time_budget,
        **precision_options(args),  # type: ignore[arg-type]
    )
    result = run_search(
        args.task,
        args.out,
        config,
        resume=args.resume,
        device=args.device,
        work_dir=args.work_dir,
        progress=_progress(args),
    )
    print(result.genotype.to_text())
    print()
    run = result.run_dir
    if result.val_dice is not None:
        print(
            f"validation Dice of the argmax architecture (supernet weights): {result.val_dice:.4f}"
        )
    print(f"genotype:        {result.genotype_path}")
    print(f"history:         {result.history_path}")
    print(f"logit snapshots: {run / 'alphas'}")
    print(f"tensorboard:     {run / 'tensorboard'}")
    print(f"checkpoint:      {run / 'checkpoint.pt'}")
    print(f"next: nasmed train TASK_DIR --arch {result.genotype_path} --out TRAIN_DIR")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from nasmed.demo import run_demo

    _set_threads(args)
    result = run_demo(args.out, seed=args.seed, device=args.device, progress=_progress(args))
    print(result.search.genotype.to_text())
    print()
    print(result.summary())
    return 0
