"""Which architecture estimator, and shared or per-layer cells? A measurement in minutes.

Three parts (docs/search.md shows the tables and the commands):

1. ``planted``: every estimator on the planted problem (:mod:`nasmed.search.planted`), 5 seeds:
   how often it picks the planted op, avoids the harmful one, and its final entropy.
2. ``snr``: the signal-to-noise ratio of one architecture-gradient estimate on the planted
   problem after the warm-up (the component that raises the planted op against the mean of the
   others, mean / sd over N draws), per estimator and, for gdas, per temperature.
3. ``real``: short real searches (``run_search``) on a synthetic task, 3 seeds per estimator and
   per cell sharing (``scnas-small``: one structure per cell type; the same space per layer):
   how often two seeds agree on an edge's op and a node's inputs (against chance), and the
   final entropies against their maxima.

This is the quick screen that chose the defaults; the full protocol (``nasmed compare``: found vs
random architectures trained stand-alone, percentiles, p-values) is benchmarks/search_validity.py.

    python benchmarks/search_estimators.py --out /tmp/est            # all three parts
    python benchmarks/search_estimators.py --out /tmp/est --quick    # smoke run
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import searchspaces
from decathlon.synthetic import write_synthetic_task
from nasmed.search.config import SearchConfig
from nasmed.search.loop import run_search
from nasmed.search.planted import (
    HARMFUL_OP,
    PLANTED_OP,
    PlantedSearch,
    planted_config,
    planted_space,
    search_planted,
)
from nasmed.supernet.plans import op_mask, subset_logits
from nasmed.train.history import read_history

ESTIMATORS = ("gdas", "proxyless", "reinforce")


def planted(seeds: int) -> list[dict[str, Any]]:
    """Part 1: one row per estimator."""
    rows = []
    uniform = 1 / len(planted_space().ops)
    for est in ESTIMATORS:
        results = [search_planted(planted_config(est, seed)) for seed in range(seeds)]
        rows.append(
            {
                "estimator": est,
                "found": sum(r.chosen == PLANTED_OP for r in results),
                "avoided": sum(r.probabilities[HARMFUL_OP] < uniform for r in results),
                "p_planted": float(np.mean([r.probabilities[PLANTED_OP] for r in results])),
                "entropy": float(np.mean([r.entropy for r in results])),
                "max_entropy": results[0].max_entropy,
                "seeds": seeds,
            }
        )
        print(rows[-1], flush=True)
    return rows


def snr(draws: int, seeds: int, taus: tuple[float, ...]) -> list[dict[str, Any]]:
    """Part 2: one row per (estimator, temperature)."""
    ops = planted_space().ops
    d = ops.index(PLANTED_OP)
    rows = []
    for est in ESTIMATORS:
        for tau in taus if est == "gdas" else (1.0,):
            values, sizes, zeros = [], [], []
            for seed in range(seeds):
                with tempfile.TemporaryDirectory() as run_dir:
                    problem = PlantedSearch(planted_config(est, seed), run_dir)
                    for epoch in range(problem.config.warmup_epochs):
                        problem.run_epoch(epoch)
                    problem.supernet.set_temperature(tau)
                    g = torch.stack([problem.arch_gradient() for _ in range(draws)])
                c = g[:, d] - (g.sum(1) - g[:, d]) / (len(ops) - 1)
                values.append(float(-c.mean() / c.std()))
                sizes.append(float(g.abs().mean()))
                zeros.append(float((g.abs().sum(1) < 1e-12).float().mean()))
            rows.append(
                {
                    "estimator": est,
                    "tau": tau if est == "gdas" else None,
                    "snr": float(np.mean(values)),
                    "mean_abs_grad": float(np.mean(sizes)),
                    "zero_fraction": float(np.mean(zeros)),
                }
            )
            print(rows[-1], flush=True)
    return rows


def _pick(row: np.ndarray, rng: np.random.Generator) -> int:
    """The argmax, ties broken at random (unmoved logits then agree only by chance)."""
    top = np.flatnonzero(row >= row.max() - 1e-7)
    return int(rng.choice(top))


def _decisions(run: Path, space: searchspaces.SearchSpace) -> tuple[list[int], list[int]]:
    """The argmax op of every (key, edge) and the argmax subset of every (key, choosing node)."""
    last = sorted((run / "alphas").glob("epoch_*.json"))[-1]
    logits = json.loads(last.read_text())["logits"]
    mask = op_mask(space)
    rng = np.random.default_rng(sum(map(ord, run.name)))
    ops, subsets = [], []
    for key in space.arch_keys():
        a = np.where(mask, np.asarray(logits[key]["ops"]), -np.inf)
        ops.extend(_pick(row, rng) for row in a)
        inputs = torch.tensor(logits[key]["inputs"])
        for node in range(1, space.nodes + 1):
            if space.kept(node) < node:
                subsets.append(_pick(subset_logits(inputs, space, node).numpy(), rng))
    return ops, subsets


def _agreement(decisions: list[list[int]]) -> float:
    pairs = list(itertools.combinations(decisions, 2))
    return float(np.mean([np.mean(np.equal(a, b)) for a, b in pairs]))


def real(
    out: Path,
    seeds: int,
    epochs: int,
    steps: int,
    patch: tuple[int, int, int],
    sharings: tuple[str, ...] = ("cell_type", "layer"),
    estimators: tuple[str, ...] = ESTIMATORS,
) -> list[Any]:
    """Part 3: one row per (sharing, estimator)."""
    task = out / "task"
    if not (task / "dataset.json").is_file():
        write_synthetic_task(task, cases=6, shape=(32, 32, 24), classes=1, test_cases=0, seed=5)
    shared = searchspaces.load("scnas-small")
    layer_yaml = out / "scnas-small-layer.yaml"
    text = (Path(searchspaces.__file__).parent / "scnas-small.yaml").read_text()
    layer_yaml.write_text(
        text.replace("name: scnas-small", "name: scnas-small-layer").replace(
            "sharing: cell_type", "sharing: layer"
        )
    )
    spaces = {"cell_type": ("scnas-small", shared), "layer": (str(layer_yaml), None)}
    rows = []
    for sharing in sharings:
        name, maybe = spaces[sharing]
        space = maybe or searchspaces.load(name)
        mask = op_mask(space)
        chance_op = float(np.mean(1 / mask.sum(1)))
        nodes = [n for n in range(1, space.nodes + 1) if space.kept(n) < n]
        chance_in = float(np.mean([1 / math.comb(n, space.kept(n)) for n in nodes]))
        for est in estimators:
            decisions_op, decisions_in, ent, ent_in, seconds = [], [], [], [], []
            for seed in range(seeds):
                run = out / f"{sharing}_{est}_{seed}"
                config = SearchConfig(
                    space=name,
                    epochs=epochs,
                    warmup_epochs=max(1, epochs // 5),
                    steps_per_epoch=steps,
                    patch=patch,
                    batch_size=2,
                    estimator=est,  # type: ignore[arg-type]
                    weight_optimizer="adamw",  # type: ignore[arg-type]
                    arch_lr=0.05,
                    val_every=epochs,
                    seed=seed,
                )
                start = time.perf_counter()
                run_search(
                    task,
                    run,
                    config,
                    device="cpu",
                    work_dir=out / "work",
                    progress=False,
                    resume=run.is_dir(),
                )
                seconds.append(time.perf_counter() - start)
                o, i = _decisions(run, space)
                decisions_op.append(o)
                decisions_in.append(i)
                last = read_history(run / "history.csv")[-1]
                ent.append(float(last["entropy_ops"]) / float(last["entropy_ops_max"]))
                ent_in.append(float(last["entropy_inputs"]) / float(last["entropy_inputs_max"]))
            rows.append(
                {
                    "sharing": sharing,
                    "estimator": est,
                    "op_agreement": _agreement(decisions_op),
                    "op_chance": chance_op,
                    "input_agreement": _agreement(decisions_in),
                    "input_chance": chance_in,
                    "entropy_ops_frac": float(np.mean(ent)),
                    "entropy_inputs_frac": float(np.mean(ent_in)),
                    "seconds_per_search": float(np.mean(seconds)),
                }
            )
            print(rows[-1], flush=True)
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/search_estimators"))
    p.add_argument("--parts", nargs="+", default=["planted", "snr", "real"])
    p.add_argument("--seeds", type=int, default=3, help="search seeds of the real part")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--patch", type=int, nargs=3, default=[32, 32, 16])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sharing", nargs="+", default=["cell_type", "layer"], help="real part")
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), help="real part")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny everything")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.seeds, args.epochs, args.steps, args.patch = 2, 2, 1, [16, 16, 16]
    if "planted" in args.parts:
        _write(args.out / "planted.csv", planted(2 if args.quick else 5))
    if "snr" in args.parts:
        taus = (1.0,) if args.quick else (0.1, 0.3, 1.0, 3.0, 10.0)
        _write(args.out / "snr.csv", snr(10 if args.quick else 100, 1 if args.quick else 2, taus))
    if "real" in args.parts:
        patch = (args.patch[0], args.patch[1], args.patch[2])
        rows = real(
            args.out,
            args.seeds,
            args.epochs,
            args.steps,
            patch,
            tuple(args.sharing),
            tuple(args.estimators),
        )
        _write(args.out / "real.csv", rows)


if __name__ == "__main__":
    main()
