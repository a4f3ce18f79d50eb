"""``nasmed classify``: slice classification with a SAOL (or GAP) head under a time budget.

Thin argparse over :func:`nasmed.classify.api.classify`; see docs/classify.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from nasmed.cli.common import add_common, add_device, add_seed, add_task_verb

__all__ = ["register"]


def _axis(text: str) -> int | str:
    if text == "auto":
        return text
    if text in ("0", "1", "2"):
        return int(text)
    raise argparse.ArgumentTypeError(f"axis must be auto, 0, 1 or 2, not {text!r}")


def register(sub: Any) -> None:
    """Add the ``classify`` verb to the ``nasmed`` subparsers."""
    p = sub.add_parser(
        "classify",
        help="classify 2D slices of a task within a time budget (SAOL + AutoCLINT)",
        description="Train a slice classifier (which labels each slice shows) on TASK_DIR within "
        "--time-budget seconds and write predictions.csv, metrics.json, alc.png, policy.json, "
        "attention/ and backbone.pt into RUN_DIR.",
    )
    p.add_argument("task_dir", metavar="TASK_DIR", help="task folder holding dataset.json")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="new or empty run folder")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished run in RUN_DIR (same settings); an unfinished one (killed "
        "before it wrote metrics.json) is started again: a time-budgeted run has no checkpoint",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        required=True,
        metavar="SECONDS",
        help="wall-clock budget of the run (it ends within it plus ~2 s)",
    )
    p.add_argument("--head", choices=("saol", "gap"), default="saol", help="output layer")
    p.add_argument(
        "--autoaugment",
        choices=("none", "light", "full"),
        default="none",
        help="augmentation policy search (default none)",
    )
    p.add_argument("--pretrained", metavar="CKPT", help="backbone.pt to start from")
    p.add_argument(
        "--policy",
        metavar="JSON",
        help="augmentation policy to train with (e.g. an earlier run's policy.json)",
    )
    p.add_argument(
        "--pretrain-on",
        metavar="SOURCE_TASK_DIR",
        help="first pretrain a backbone on this task's slices (own budget)",
    )
    p.add_argument(
        "--pretrain-budget",
        type=float,
        metavar="SECONDS",
        help="seconds for --pretrain-on (default: --time-budget)",
    )
    p.add_argument(
        "--axis",
        type=_axis,
        default="auto",
        help="slice axis: auto (closest to superior-inferior), 0, 1 or 2",
    )
    p.add_argument("--arch", choices=("resnet18", "resnet34", "resnet10"), default="resnet18")
    p.add_argument("--width", type=int, default=32, help="first-stage channels (default 32)")
    p.add_argument("--input-size", type=int, help="slice side in pixels (default: from the data)")
    p.add_argument(
        "--min-area",
        type=int,
        default=1,
        help="voxels a label needs in a slice to count as shown (default 1)",
    )
    p.add_argument("--cutmix", action="store_true", help="CutMix (also for --head gap)")
    p.add_argument(
        "--location",
        action="store_true",
        help="location-specific self-supervision with CutMix (SAOL)",
    )
    p.add_argument("--distill", action="store_true", help="self-distillation (SAOL)")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="slice cache (default $NASMED_CACHE/slices or ~/.cache/nasmed/slices)",
    )
    add_seed(p)
    add_device(p)
    add_common(p)
    add_task_verb(p, _classify)


def _classify(args: argparse.Namespace) -> int:
    from nasmed.classify.api import ClassifyConfig, classify, pretrain_backbone
    from nasmed.classify.autoaugment.policy import Policy
    from nasmed.errors import ConfigError
    from nasmed.rundir import prepare_run_dir, release_run_dir
    from nasmed.runtime import resolve_device, seed_everything

    cfg = ClassifyConfig(
        time_budget=args.time_budget,
        head=args.head,
        arch=args.arch,
        width=args.width,
        autoaugment=args.autoaugment,
        cutmix=args.cutmix,
        location=args.location,
        distill=args.distill,
        axis=args.axis,
        input_size=args.input_size,
        min_area=args.min_area,
        seed=args.seed,
    )
    if args.pretrained and args.pretrain_on:
        raise ConfigError("--pretrained and --pretrain-on exclude each other; give one")
    device = resolve_device(args.device)
    if args.pretrained:  # refuse a checkpoint of another architecture before writing anything
        from nasmed.classify.backbones import BackboneSpec
        from nasmed.classify.pretrained import load_backbone_state

        load_backbone_state(args.pretrained, BackboneSpec(args.arch, 1, args.width))
    cache = (
        args.cache_dir
        or Path(os.environ.get("NASMED_CACHE") or Path.home() / ".cache" / "nasmed") / "slices"
    )
    policy = Policy.load(args.policy) if args.policy else None
    skip = ("func", "verbose", "quiet", "resume")
    settings = {k: v for k, v in vars(args).items() if k not in skip}
    out, resumed = prepare_run_dir(
        args.out,
        "classify",
        settings,
        resume=args.resume,
        immutable=tuple(k for k in settings if k not in ("device", "cache_dir")),
        inputs=(args.task_dir, args.pretrained, args.policy, args.pretrain_on),
        task_root=args.task_dir,
        complete="metrics.json",
    )
    if resumed:
        m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        release_run_dir(out)
        print(f"{out}: the run is already complete")
        _report(out, m, float(m.get("elapsed_seconds", 0.0)), args.time_budget)
        return 0
    seed_everything(args.seed)
    pretrained = args.pretrained
    if args.pretrain_on:
        from dataclasses import replace

        pre = replace(cfg, time_budget=args.pretrain_budget or args.time_budget)
        pretrained = pretrain_backbone(
            args.pretrain_on, out / "pretrained_backbone.pt", pre, device=device, cache_dir=cache
        )
    start = time.perf_counter()
    try:
        m = classify(
            args.task_dir,
            out,
            cfg,
            device=device,
            cache_dir=cache,
            pretrained=pretrained,
            policy=policy,
        )
    finally:
        release_run_dir(out)
    _report(out, m, time.perf_counter() - start, args.time_budget)
    return 0


def _report(out: Path, m: dict[str, Any], seconds: float, budget: float) -> None:
    auc = "n/a" if m["mean_auc"] is None else f"{m['mean_auc']:.4f}"
    print(
        f"wrote {out}: mean AUC {auc}, accuracy {m['accuracy']:.4f}, ALC {m['alc']:.4f} "
        f"({len(m['anytime'])} predictions, {m['steps']} steps, "
        f"{seconds:.1f} s of {budget:g} s)"
    )
