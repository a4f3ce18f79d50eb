"""2D slice classification: SAOL vs GAP-FC, AutoCLINT vs a plain trainer, FAA, pretraining.

Every arm gets the same wall-clock budget (``--budget`` seconds, counted from the start of
:func:`nasmed.classify.api.classify`, slicing from a warm cache included) on the same synthetic
slice set, for each seed (the seed also picks the case split). ResNet-18 of width 16, 32x32
slices, one torch thread, CPU. Arms:

1. SAOL vs GAP-FC on the same backbone, with the training switches ablated (SAOL +
   location-specific CutMix self-supervision, SAOL + self-distillation, GAP-FC + plain
   CutMix): test AUC, accuracy, ALC, parameters, training step time (forward + backward + SGD
   step with the plain loss, batch 32, median of interleaved steps), also at the CLI's default
   width 32 and 64 px.
2. AutoCLINT (SAOL, no augmentation) vs a plain trainer of the same network: fixed 30
   epochs over the training slices, plain loss, SGD momentum 0.9, cosine learning rate, batch 32,
   one prediction at the end (or when the budget runs out): ALC.
3. Augmentation: none vs a random policy (10 random sub-policies) vs light FAA vs full FAA:
   AUC, ALC, search seconds.
4. A backbone pretrained (``--budget`` seconds) on a source task's slices vs scratch: ALC.

Usage::

    python benchmarks/classify.py                      # budget 15 s, seeds 0 1 2 (~9 minutes)
    python benchmarks/classify.py --budget 8 --seeds 0    # a quick look
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nasmed.viz.classify  # noqa: F401  (matplotlib loaded once, before any arm's clock)
from decathlon.datalist import load_task
from decathlon.synthetic import write_synthetic_task
from nasmed.classify.alc import alc, autodl_score, class_aucs
from nasmed.classify.api import ClassifyConfig, classify, prepare_slices, pretrain_backbone
from nasmed.classify.autoaugment.policy import Policy, random_subpolicy
from nasmed.classify.autoclint import predict
from nasmed.classify.backbones import BackboneSpec
from nasmed.classify.saol import build_classifier
from nasmed.classify.selfsup import LossConfig, total_loss

CPU = torch.device("cpu")
SAOL = "SAOL"
WIDTH, SIZE = 16, 32


def _cfg(budget: float, seed: int, **kw: Any) -> ClassifyConfig:
    return ClassifyConfig(
        time_budget=budget, width=WIDTH, input_size=SIZE, seed=seed, attention_maps=0, **kw
    )


def run_arm(task: Path, work: Path, name: str, cfg: ClassifyConfig, **kw: Any) -> dict[str, Any]:
    out = work / "runs" / f"{name}_s{cfg.seed}"
    shutil.rmtree(out, ignore_errors=True)
    m = classify(task, out, cfg, device=CPU, cache_dir=work / "cache", **kw)
    first = m["anytime"][0]["seconds"] if m["anytime"] else math.nan
    return {
        "auc": m["mean_auc"],
        "acc": m["accuracy"],
        "alc": m["alc"],
        "first": first,
        "search": m["search"].get("seconds", 0.0),
        "subs": m["policy_sub_policies"],
        "elapsed": m["elapsed_seconds"],
        "steps": m["steps"],
    }


def run_plain(task: Path, work: Path, cfg: ClassifyConfig, epochs: int = 30) -> dict[str, Any]:
    """A plain trainer: fixed epochs, cosine LR, one prediction at the end."""
    start = time.perf_counter()
    deadline = start + cfg.time_budget
    data = prepare_slices(load_task(task), cfg, work / "cache")
    assert data.test is not None
    torch.manual_seed(cfg.seed)
    model = build_classifier(BackboneSpec("resnet18", 1, WIDTH), len(data.train.class_names))
    x = torch.from_numpy(data.train.images)
    y = torch.from_numpy(data.train.targets.astype(np.float32))
    batch = 32
    steps = epochs * math.ceil(len(x) / batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    loss_cfg = LossConfig(multilabel=data.multilabel)
    step_time, n = 0.0, 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            if time.perf_counter() + 2 * step_time + 1.0 > deadline:
                break
            t = time.perf_counter()
            idx = order[i : i + batch]
            loss, _ = total_loss(model, x[idx], y[idx], loss_cfg, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step_time = time.perf_counter() - t
            n += 1
    probs = predict(model, torch.from_numpy(data.test.images), data.multilabel, tta=False)
    seconds = time.perf_counter() - start
    score = autodl_score(data.test.targets, probs)
    aucs = [a for a in class_aucs(data.test.targets, probs) if not math.isnan(a)]
    return {
        "auc": float(np.mean(aucs)),
        "acc": float(((probs >= 0.5) == data.test.targets).mean()),
        "alc": alc([seconds], [score], cfg.time_budget),
        "first": seconds,
        "search": 0.0,
        "subs": 0,
        "elapsed": seconds,
        "steps": n,
    }


def step_times(
    width: int = WIDTH, size: int = SIZE, repeats: int = 30
) -> dict[str, tuple[int, float]]:
    """Parameters and median training-step milliseconds of each head (plain loss), interleaved."""
    models = {
        h: build_classifier(BackboneSpec("resnet18", 1, width), 2, h) for h in ("saol", "gap")
    }
    opts = {h: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for h, m in models.items()}
    x, y = torch.randn(32, 1, size, size), (torch.rand(32, 2) < 0.5).float()
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {h: [] for h in models}
    for r in range(repeats + 5):
        for h, m in models.items():
            t = time.perf_counter()
            loss, _ = total_loss(m, x, y, LossConfig(), gen)
            opts[h].zero_grad()
            loss.backward()
            opts[h].step()
            if r >= 5:
                times[h].append(time.perf_counter() - t)
    return {
        h: (sum(p.numel() for p in models[h].parameters()), 1000 * statistics.median(ts))
        for h, ts in times.items()
    }


def _fmt(rows: list[dict[str, Any]], key: str, digits: int = 3) -> str:
    vals = [r[key] for r in rows if r[key] is not None and not math.isnan(r[key])]
    if not vals:
        return "n/a"
    per = " / ".join(f"{v:.{digits}f}" for v in vals)
    return f"**{statistics.mean(vals):.{digits}f}** ({per})"


def _table(
    title: str,
    cols: list[tuple[str, str]],
    arms: dict[str, list[dict[str, Any]]],
    extra: Callable[[str], list[str]] | None = None,
    extra_cols: tuple[str, ...] = (),
) -> str:
    head = ["arm", *extra_cols, *[c for c, _ in cols]]
    lines = [f"\n**{title}**\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rows in arms.items():
        cells = [name, *(extra(name) if extra else []), *[_fmt(rows, k) for _, k in cols]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--budget", type=float, default=15.0, help="seconds per arm (default 15)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cases", type=int, default=30, help="labelled cases per task (default 30)")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="nasmed-bench-classify-"))
    t_all = time.perf_counter()
    target = write_synthetic_task(
        work / "target",
        cases=args.cases,
        shape=(48, 48, 24),
        classes=2,
        seed=11,
        test_cases=0,
        overwrite=True,
    )
    source = write_synthetic_task(
        work / "source",
        cases=args.cases,
        shape=(48, 48, 24),
        classes=3,
        seed=23,
        test_cases=0,
        overwrite=True,
    )
    for seed in args.seeds:  # warm the slice caches so every arm starts alike
        prepare_slices(load_task(target), _cfg(args.budget, seed), work / "cache")
    b = args.budget
    arms: dict[str, list[dict[str, Any]]] = {}
    run_arm(target, work, "warmup", _cfg(4.0, args.seeds[0]))  # one-time start-up costs, unscored

    def add(name: str, row: dict[str, Any]) -> None:
        arms.setdefault(name, []).append(row)
        print(
            f"  {name} seed {len(arms[name]) - 1}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)),
            flush=True,
        )

    for seed in args.seeds:
        add(SAOL, run_arm(target, work, "saol", _cfg(b, seed)))
        add("SAOL + location (CutMix)", run_arm(target, work, "loc", _cfg(b, seed, location=True)))
        add("SAOL + self-distillation", run_arm(target, work, "sd", _cfg(b, seed, distill=True)))
        add("GAP-FC", run_arm(target, work, "gap", _cfg(b, seed, head="gap")))
        add(
            "GAP-FC + CutMix",
            run_arm(target, work, "gapcm", _cfg(b, seed, head="gap", cutmix=True)),
        )
        add("plain 30 epochs", run_plain(target, work, _cfg(b, seed)))
        rng = random.Random(seed)
        rand = Policy(tuple(random_subpolicy(rng) for _ in range(10)))
        add("random policy", run_arm(target, work, "rand", _cfg(b, seed), policy=rand))
        add("light FAA", run_arm(target, work, "light", _cfg(b, seed, autoaugment="light")))
        add("full FAA", run_arm(target, work, "full", _cfg(b, seed, autoaugment="full")))
        ckpt = pretrain_backbone(
            source,
            work / f"source_backbone_s{seed}.pt",
            _cfg(b, seed),
            device=CPU,
            cache_dir=work / "cache",
        )
        add("pretrained on source", run_arm(target, work, "pre", _cfg(b, seed), pretrained=ckpt))
    cost = step_times()
    cost_default = step_times(32, 64, repeats=10)
    print(
        f"\nbudget {b:g} s per arm, seeds {args.seeds}, {args.cases} cases split 60/20/20 by "
        f"case, ResNet-18 width {WIDTH}, {SIZE}x{SIZE} slices, 1 thread; mean (per seed); "
        f"total {time.perf_counter() - t_all:.0f} s"
    )
    heads = {
        k: arms[k]
        for k in (
            SAOL,
            "SAOL + location (CutMix)",
            "SAOL + self-distillation",
            "GAP-FC",
            "GAP-FC + CutMix",
        )
    }

    def cost_cells(name: str) -> list[str]:
        p, ms = cost["gap" if name.startswith("GAP") else "saol"]
        return [f"{p:,}", f"{ms:.1f}"]

    print(
        _table(
            "1. Output layer (same backbone, same budget)",
            [("test AUC", "auc"), ("accuracy", "acc"), ("ALC", "alc")],
            heads,
            cost_cells,
            ("params", "step ms"),
        )
    )
    ratio = cost["saol"][1] / cost["gap"][1]
    ratio64 = cost_default["saol"][1] / cost_default["gap"][1]
    print(
        f"\nSAOL / GAP step time (plain loss, batch 32): {ratio:.3f}x at width {WIDTH}, {SIZE} px; "
        f"{ratio64:.3f}x at the CLI default width 32, 64 px "
        f"({cost_default['saol'][1]:.0f} vs {cost_default['gap'][1]:.0f} ms)"
    )
    print(
        _table(
            "2. Trainer",
            [("ALC", "alc"), ("test AUC", "auc"), ("first prediction s", "first")],
            {"AutoCLINT": arms[SAOL], "plain 30 epochs": arms["plain 30 epochs"]},
        )
    )
    print(
        _table(
            "3. Augmentation",
            [
                ("test AUC", "auc"),
                ("accuracy", "acc"),
                ("ALC", "alc"),
                ("search s", "search"),
                ("sub-policies", "subs"),
            ],
            {
                "none": arms[SAOL],
                "random policy": arms["random policy"],
                "light FAA": arms["light FAA"],
                "full FAA": arms["full FAA"],
            },
        )
    )
    print(
        _table(
            "4. Initialisation",
            [("ALC", "alc"), ("test AUC", "auc")],
            {"scratch": arms[SAOL], "pretrained on source": arms["pretrained on source"]},
        )
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
