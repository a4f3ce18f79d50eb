"""Memory and time of GPipe training on CPU: a genotype network, plain versus pipelined.

A derived network (a genotype sampled with seed 0 from ``--space``, default the GPU-scale
default ``scnas``: 2.6 M parameters; 1 input channel, 3 classes, Dice + CE, SGD) trains on
random volumes of ``--patch``^3. Every configuration runs in its own subprocess:

- ``plain``: the network itself;
- ``gpipe``: :func:`nasmed.pipeline.build_pipeline` over two CPU partitions (``cpu,cpu``) with
  ``--chunks`` micro-batches per batch and each ``--checkpoint`` mode. The balance is profiled
  once (a 1-volume sample, by memory and time) and given to every pipelined run, so all compare
  the same split.

Each batch size trains in a fresh process, so its peak is its own whatever ran before:
``--batch`` (one untimed step, then ``--repeat`` timed steps, their median reported) and, for
the extrapolation, a quarter and half of it where they fill every chunk (one step each). The
peak RSS of the process (``ru_maxrss``: Python, torch, the network and everything a step
allocated) is read before the first step (the baseline, at batch 0) and after the steps.
"peak" is the process' peak at ``--batch``; "step" is that peak minus the baseline (what the
training step itself added). The largest batch that fits ``--limit-gib`` is an estimate, not
measured: the least-squares line through those peaks (2 to 4 points), extrapolated. On CPU
every partition runs in the same worker thread: the pipeline can only save memory, not time.
Every child sets its CPU allocator first (:func:`nasmed.allocator.configure_cpu_allocator`;
``--cpu-allocator``, default ``cache`` as ``nasmed train`` runs; several policies compare each
against the plain network under the same policy). "kernel s" is the system CPU time of a timed
step (page faults: memory handed back to the system and faulted in again).

Usage::

    python benchmarks/gpipe_memory.py --threads 2   # 96^3, batch 8, chunks 2/4/8 x 3 modes
    python benchmarks/gpipe_memory.py --quick       # 48^3, same matrix
    python benchmarks/gpipe_memory.py --only plain,4:always --cpu-allocator cache lean system
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nasmed.allocator import CpuAllocator, configure_cpu_allocator

HERE = Path(__file__).resolve()
MODES = ("always", "except_last", "never")


# --- children ---------------------------------------------------------------------------------


def _network(space_name: str) -> Any:
    import searchspaces
    from nasmed.models.derived import DerivedNet
    from nasmed.supernet import sample_genotype

    space = searchspaces.load(space_name)
    return DerivedNet(sample_genotype(space, 0), space, 1, 3)


def _child_profile(cfg: dict[str, Any]) -> dict[str, Any]:
    import torch

    from nasmed.pipeline import format_balance, partition, profile_layers, to_sequential
    from nasmed.pipeline.balance import layer_weights

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    net = _network(cfg["space"])
    seq = to_sequential(net)
    sample = torch.randn(1, 1, *([cfg["patch"]] * 3))
    costs = profile_layers(seq, sample, repeats=2)
    balance = partition(layer_weights(costs, "mixed"), 2)
    return {
        "balance": balance,
        "layers": len(costs),
        "params": sum(p.numel() for p in net.parameters()),
        "table": format_balance(balance, costs, ["cpu", "cpu"]),
    }


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _child_run(cfg: dict[str, Any]) -> dict[str, Any]:
    import torch

    from nasmed.pipeline import PipelineConfig, build_pipeline
    from nasmed.train.losses import make_seg_loss

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    model = _network(cfg["space"])
    net: torch.nn.Module = model
    if cfg["chunks"]:
        pipe = PipelineConfig(
            ("cpu", "cpu"),
            chunks=cfg["chunks"],
            checkpoint=cfg["checkpoint"],
            balance=tuple(cfg["balance"]),
        )
        net = build_pipeline(model, pipe)
    net.train()
    loss_fn = make_seg_loss()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    side = cfg["patch"]

    def step(batch: int) -> tuple[float, float]:
        gen = torch.Generator().manual_seed(batch)
        image = torch.randn(batch, 1, side, side, side, generator=gen)
        label = torch.randint(0, 3, (batch, 1, side, side, side), generator=gen)
        kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(image), label)
        loss.backward()
        opt.step()
        seconds = time.perf_counter() - start
        return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_stime - kernel

    baseline = _peak_bytes()  # before the first step
    step(cfg["batch"])
    seconds = kernel = math.nan
    if cfg["repeat"]:  # the steps after the first are timed
        timed = sorted(step(cfg["batch"]) for _ in range(cfg["repeat"]))
        seconds, kernel = timed[len(timed) // 2]  # the median step (odd --repeat)
    return {"baseline": baseline, "peak": _peak_bytes(), "step_s": seconds, "kernel_s": kernel}


# --- parent -----------------------------------------------------------------------------------


def _spawn(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(HERE), "--child", json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {cfg} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _max_batch(peaks: dict[str, int], limit: float, chunks: int) -> int | None:
    """Largest batch under ``limit`` on the least-squares line through the measured peaks."""
    points = [(int(b), float(p)) for b, p in peaks.items()]
    n = len(points)
    mean_b = sum(b for b, _ in points) / n
    mean_p = sum(p for _, p in points) / n
    var = sum((b - mean_b) ** 2 for b, _ in points)
    slope = sum((b - mean_b) * (p - mean_p) for b, p in points) / var
    if slope <= 0:
        return None
    best = math.floor((limit - (mean_p - slope * mean_b)) / slope)
    return best if best >= max(1, chunks) else 0


def _configs(chunks: list[int], only: set[str] | None) -> list[tuple[int, str]]:
    out = [(0, "-")] + [(c, m) for c in chunks for m in MODES]
    if only is None:
        return out
    return [(c, m) for c, m in out if ("plain" if c == 0 else f"{c}:{m}") in only]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="48^3 volumes")
    parser.add_argument("--patch", type=int, default=None, help="volume side (default 96)")
    parser.add_argument("--batch", type=int, default=8, help="volumes per batch (default 8)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--space", default="scnas", help="search space of the genotype")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per child")
    parser.add_argument("--limit-gib", type=float, default=16.0, help="memory for the max batch")
    parser.add_argument("--only", default=None, help="e.g. plain,4:always (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="timed steps (median; default 1)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per child")
    parser.add_argument(
        "--cpu-allocator",
        nargs="+",
        choices=[a.value for a in CpuAllocator],
        default=["cache"],
        help="allocator policies to compare (default cache, as nasmed train runs)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.child is not None:
        cfg = json.loads(args.child)
        configure_cpu_allocator(cfg["allocator"])  # before torch starts its threads
        fn = _child_profile if cfg["kind"] == "profile" else _child_run
        print(json.dumps(fn(cfg)))
        return

    patch = args.patch or (48 if args.quick else 96)
    base = {"space": args.space, "threads": args.threads, "patch": patch, "repeat": args.repeat}
    only = set(args.only.split(",")) if args.only else None
    started = time.perf_counter()
    prof = _spawn({**base, "kind": "profile", "allocator": args.cpu_allocator[0]}, args.timeout)
    print(
        f"# {args.space} genotype (seed 0), {prof['params']:,} parameters, {prof['layers']} layers"
    )
    print(f"# balance for 2 CPU partitions (profiled on 1 x {patch}^3):\n{prof['table']}\n")
    limit = args.limit_gib * 2**30
    rows: list[dict[str, Any]] = []
    for chunks, mode in _configs(args.chunks, only):
        # the batch sizes of the extrapolation: a quarter, half and all of the batch, those
        # that fill every chunk (the baseline before the first step is a point, at batch 0)
        sizes = sorted({b for b in (args.batch // 4, args.batch // 2) if b >= max(1, chunks)})
        for allocator in args.cpu_allocator:  # side by side, so load changes hit every policy
            cfg = {
                **base,
                "kind": "run",
                "allocator": allocator,
                "chunks": chunks,
                "checkpoint": mode,
                "balance": prof["balance"],
            }
            # each batch size in a fresh process: its peak is its own, whatever ran before
            result = _spawn({**cfg, "batch": args.batch}, args.timeout)
            peaks = {"0": result["baseline"], str(args.batch): result["peak"]}
            for size in sizes:
                peaks[str(size)] = _spawn({**cfg, "batch": size, "repeat": 0}, args.timeout)["peak"]
            peak = result["peak"]
            rows.append(
                {
                    "config": "plain" if chunks == 0 else f"gpipe {chunks}",
                    "allocator": allocator,
                    "chunks": chunks,
                    "checkpoint": mode,
                    "peak_gib": peak / 2**30,
                    "step_gib": (peak - result["baseline"]) / 2**30,
                    "step_s": result["step_s"],
                    "kernel_s": result["kernel_s"],
                    "peaks": peaks,
                    "max_batch": _max_batch(peaks, limit, chunks),
                }
            )
            print(
                f"# done {rows[-1]['config']} {mode} ({allocator}): {peak / 2**30:.2f} GiB, "
                f"{result['step_s']:.1f} s"
            )
    plains = {r["allocator"]: r for r in rows if r["chunks"] == 0}
    print(
        "\n| network | allocator | patch | batch | chunks | checkpoint | peak GiB | x plain "
        "| step GiB | x plain | s/step | kernel s | x plain "
        f"| est. max batch in {args.limit_gib:g} GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def ratio(r: dict[str, Any], key: str) -> str:
        plain = plains.get(r["allocator"])
        return f"{r[key] / plain[key]:.2f}" if plain and plain[key] > 0 else "-"

    for r in sorted(rows, key=lambda r: args.cpu_allocator.index(r["allocator"])):
        chunks_s = str(r["chunks"]) if r["chunks"] else "-"
        print(
            f"| {r['config']} | {r['allocator']} | {patch}^3 | {args.batch} | {chunks_s} | "
            f"{r['checkpoint']} | {r['peak_gib']:.2f} | {ratio(r, 'peak_gib')} | "
            f"{r['step_gib']:.2f} | {ratio(r, 'step_gib')} | {r['step_s']:.1f} | "
            f"{r['kernel_s']:.1f} | {ratio(r, 'step_s')} | {r['max_batch']} |"
        )
    print(f"\n# total {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"patch": patch, "batch": args.batch, "rows": rows}))


if __name__ == "__main__":
    main()
