"""Transfer vs scratch: does an architecture trained on one task give a head start on another?

On synthetic tasks, with the same training budget for both arms: the architecture found by a
short search (``nasmed.search.loop.run_search`` on task A, space ``scnas-small``) is trained on
task A (``--source-epochs``, default 40 epochs) and fine-tuned on task B (another shape, 2
MR-like modalities instead of 1 CT-like, another class count; the stem adapted to the
modalities unless ``--no-adapt-inputs``) against the same architecture trained from scratch on
B, same budget: validation Dice after 25 %, 50 % and 100 % of the epochs (one run per seed,
validated at those epochs; the poly schedule spans the whole budget). Target: transfer ahead at
25 % and not behind at 100 %.

(Until issue 12 this was the second half of ``benchmarks/search_validity.py``, whose first half
is now the search-validity protocol.) Finished runs in ``--out`` are reused.

    .venv/bin/python benchmarks/transfer_benefit.py                 # ~15 min on 2 idle CPU cores
    .venv/bin/python benchmarks/transfer_benefit.py --quick         # smoke run

Prints a markdown table and writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from decathlon.synthetic import write_synthetic_task
from nasmed.demo import DEMO_SEARCH
from nasmed.search.loop import run_search
from nasmed.train.config import TrainConfig
from nasmed.train.history import read_history
from nasmed.training import train
from nasmed.transfer import TransferConfig, transfer

SPACE = "scnas-small"


def _search(task: Path, out: Path, work: Path, args: argparse.Namespace) -> tuple[Path, str]:
    """Run a short search with the demo's optimiser settings; the genotype path and a summary."""
    config = replace(
        DEMO_SEARCH,
        epochs=args.search_epochs,
        warmup_epochs=args.search_warmup,
        steps_per_epoch=args.search_steps,
        patch=tuple(args.patch),
        val_every=args.search_epochs,
        seed=0,
    )
    start = time.perf_counter()
    run_search(task, out, config, device="cpu", work_dir=work, progress=False)
    took = time.perf_counter() - start
    return out / "genotype.json", (
        f"run_search({SPACE}, {args.search_epochs} epochs incl. {args.search_warmup} warm-up, "
        f"{args.search_steps} steps, patch {tuple(args.patch)}, seed 0): {took:.0f} s"
    )


def _val_rows(run: Path) -> dict[int, float]:
    return {
        int(r["epoch"]): float(r["val_dice"])
        for r in read_history(run / "history.csv")
        if r.get("val_dice") is not None
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("bench_out/search_validity"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--transfer-epochs", type=int, default=8)
    p.add_argument("--transfer-steps", type=int, default=15)
    p.add_argument(
        "--source-epochs",
        type=int,
        default=40,
        help="train the transferred weights on task A for this many epochs (default 40; "
        "equal to --epochs: the candidates' runs are reused)",
    )
    p.add_argument(
        "--no-adapt-inputs",
        dest="adapt_inputs",
        action="store_false",
        help="transfer with the stem re-initialised instead of adapted to B's modalities",
    )
    p.add_argument("--optimizer", default="adamw", help="for every network (default adamw)")
    p.add_argument("--lr", type=float, default=3e-3, help="for every network (default 3e-3)")
    p.add_argument("--patch", type=int, nargs=3, default=[32, 32, 16])
    p.add_argument("--search-epochs", type=int, default=40)
    p.add_argument("--search-steps", type=int, default=20)
    p.add_argument("--search-warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny budget: checks the script runs")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.steps = [0, 1], 2, 2
        args.search_warmup, args.source_epochs = 1, 2
        args.transfer_epochs, args.transfer_steps, args.search_epochs, args.search_steps = (
            4,
            1,
            2,
            2,
        )
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    patch = (args.patch[0], args.patch[1], args.patch[2])
    t0 = time.perf_counter()

    task_a = out / "taskA"
    task_b = out / "taskB"
    if not (task_a / "dataset.json").is_file():
        write_synthetic_task(task_a, cases=8, shape=(48, 48, 32), classes=2, seed=21, test_cases=0)
    if not (task_b / "dataset.json").is_file():
        write_synthetic_task(
            task_b, cases=8, shape=(40, 56, 32), classes=1, modalities=2, seed=22, test_cases=0
        )

    searched, how = (
        _search(task_a, out / "search", out / "workA", args)
        if not (out / "search" / "genotype.json").is_file()
        else (out / "search" / "genotype.json", "reused")
    )
    archs: dict[str, Any] = {"searched": searched}
    base = TrainConfig(
        patch=patch, folds=4, batch_size=2, optimizer=args.optimizer, lr=args.lr, workers=0
    )
    runtime: dict[str, Any] = dict(device="cpu", progress=False)
    results: dict[str, Any] = {"search": how, "transfer": {}}
    short_source = args.source_epochs is None or args.source_epochs == args.epochs
    for seed in args.seeds if short_source else ():  # the sources at the candidates' budget
        run = out / "runs" / f"searched_s{seed}"
        if not (run / "model.json").is_file():
            config = base.replace(
                epochs=args.epochs, steps_per_epoch=args.steps, val_every=args.epochs, seed=seed
            )
            train(task_a, searched, run, config, work_dir=out / "workA", **runtime)

    # transfer A -> B, the searched architecture
    src_name = "searched"
    sources = {seed: out / "runs" / f"{src_name}_s{seed}" for seed in args.seeds}
    if args.source_epochs is not None and args.source_epochs != args.epochs:
        for seed in args.seeds:  # a longer-trained source, as users transfer converged models
            sources[seed] = out / "runs" / f"source_e{args.source_epochs}_s{seed}"
            if not (sources[seed] / "model.json").is_file():
                config = base.replace(
                    epochs=args.source_epochs,
                    steps_per_epoch=args.steps,
                    val_every=args.source_epochs,
                    seed=seed,
                )
                train(
                    task_a,
                    archs[src_name],
                    sources[seed],
                    config,
                    work_dir=out / "workA",
                    **runtime,
                )
    te = args.transfer_epochs
    tag = "" if args.adapt_inputs else "_reinit"
    if args.source_epochs is not None and args.source_epochs != args.epochs:
        tag += f"_e{args.source_epochs}"
    marks = {25: max(1, te // 4), 50: max(1, te // 2), 100: te}
    for seed in args.seeds:
        for mode in ("transfer", "scratch"):
            name = f"B_{mode}{tag if mode == 'transfer' else ''}_s{seed}"
            run = out / "runs" / name
            config = base.replace(
                epochs=te,
                steps_per_epoch=args.transfer_steps,
                val_every=max(1, te // 4),
                seed=seed,
            )
            kw = dict(work_dir=out / "workB", **runtime)
            if not (run / "model.json").is_file():
                if mode == "transfer":
                    tc = TransferConfig(
                        weights=sources[seed], adapt_inputs=args.adapt_inputs, train=config
                    )
                    transfer(archs[src_name], task_b, run, tc, **kw)
                else:
                    train(task_b, archs[src_name], run, config, **kw)
            val = _val_rows(run)
            results["transfer"].setdefault(mode, []).append(
                {pct: val.get(ep - 1) for pct, ep in marks.items()}
            )
        print(f"transfer seed {seed}: {results['transfer']}", file=sys.stderr, flush=True)
    results["settings"] = {
        "seeds": args.seeds,
        "epochs": args.epochs,
        "steps": args.steps,
        "batch": 2,
        "patch": list(patch),
        "transfer_epochs": te,
        "transfer_steps": args.transfer_steps,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "threads": args.threads,
        "source_arch": src_name,
        "source_epochs": args.source_epochs or args.epochs,
        "adapt_inputs": args.adapt_inputs,
    }
    results["seconds"] = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


def report(results: dict[str, Any]) -> str:
    """Markdown tables and the targets."""
    lines = [f"search: {results['search']}"]
    tr = results["transfer"]
    if tr:
        lines += ["", "| start | Dice @25% | Dice @50% | Dice @100% |", "|---|---|---|---|"]
        means = {}
        for mode, runs in tr.items():
            cells = []
            for pct in ("25", "50", "100"):
                vals = [r.get(pct, r.get(int(pct))) for r in runs]
                vals = [v for v in vals if v is not None]
                m = statistics.mean(vals) if vals else float("nan")
                means[(mode, pct)] = m
                cells.append(f"{m:.3f} ({', '.join(f'{v:.3f}' for v in vals)})")
            lines.append(f"| {mode} | " + " | ".join(cells) + " |")
        if ("transfer", "25") in means and ("scratch", "25") in means:
            ahead = means[("transfer", "25")] > means[("scratch", "25")]
            not_behind = means[("transfer", "100")] >= means[("scratch", "100")]
            lines.append(
                f"\ntransfer ahead at 25%: {'met' if ahead else 'not met'}; "
                f"not behind at 100%: {'met' if not_behind else 'not met'}"
            )
    lines.append(f"\ntotal {results.get('seconds', 0):.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
