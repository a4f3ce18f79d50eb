"""Memory and time of one search step: sampled vs mixed supernet, one child, MONAI DiNTS.

Configurations, each in its own subprocess (batch 1, ``torch.set_num_threads(2)`` unless
``--threads``), on random images with 3 classes:

- ``sampled``: one step of ``nasmed search`` in its default mode, i.e. a weights step (SGD) on one
  batch followed by an architecture step (Adam) on another, each drawing a fresh hard Gumbel
  sample: the :class:`~nasmed.search.searcher.Searcher`'s own ``weights_step`` + ``arch_step``.
- ``mixed``: the same two steps with the supernet in DARTS mode (every op of every edge runs).
- ``child``: one training step (SGD) of the derived network of a uniformly sampled genotype of
  the same space (:class:`~nasmed.models.derived.DerivedNet`).
- ``dints``: one weights step (SGD) of MONAI's ``DiNTS`` over ``TopologySearch(channel_mul=0.5,
  num_blocks=12, num_depths=4, use_downsample=True)`` (every path and op runs).

Peak memory is the child process' peak RSS (``os.wait4`` -> ``ru_maxrss``: imports, model,
optimiser state, activations); "step" memory is that peak minus the peak before the first step
(imports, the network and its parameters), i.e. what the step itself added. Every configuration
runs with the CPU allocator ``nasmed search`` uses by default, ``lean`` (glibc's mmap threshold
pinned at 128 KiB; ``--cpu-allocator cache|system`` for the others, :mod:`nasmed.allocator`).
Seconds per step are the median of ``--steps`` steps after one
warm-up step. A configuration predicted to exceed ``--max-gb`` (or 90% of the memory available
when it starts) is skipped: DiNTS from its measured figures (REFERENCE.md §2), mixed and larger
patches from the declared activation bytes of the ops (:mod:`nasmed.supernet.cost`) scaled by the
ratio measured at a smaller patch. Prints a markdown table and writes JSON with ``--json``.

Usage::

    nice python benchmarks/search_memory.py              # scnas at 32^3 (calibration) to 128^3
    python benchmarks/search_memory.py --patches 32 --steps 1    # quick look
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nasmed.allocator import CpuAllocator, configure_cpu_allocator

HERE = Path(__file__).resolve()
CONFIGS = ("child", "sampled", "mixed", "dints")
CLASSES = 3
#: MONAI DiNTS (12 blocks x 4 depths, channel_mul 0.5), one weights step, measured here
#: (REFERENCE.md §2): patch side -> peak RSS in GB.
DINTS_GB = {32: 2.0, 64: 6.1, 96: 17.0}
#: Declared activation bytes leave out transient buffers: measured RSS grows by about this much
#: per declared byte (4.3 for the mixed step at 32^3 here); used until two patches of one
#: configuration have been measured.
DEFAULT_BYTES_FACTOR = 4.5


# --- child process ------------------------------------------------------------------------------


def _batch(patch: int, seed: int) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    shape = (1, 1, patch, patch, patch)
    return {
        "image": torch.randn(shape, generator=g),
        "label": torch.randint(0, CLASSES, shape, generator=g),
    }


def _child(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import searchspaces
    from nasmed.train.losses import make_seg_loss

    patch = args.patch
    loss_fn = make_seg_loss()
    space = searchspaces.load(args.space)
    info: dict[str, Any] = {}
    net: torch.nn.Module
    if args.child in ("sampled", "mixed"):
        from nasmed.search.config import SearchConfig
        from nasmed.search.searcher import Searcher
        from nasmed.supernet import Supernet

        config = SearchConfig(
            space=args.space,
            epochs=2,
            warmup_epochs=1,
            steps_per_epoch=1,
            patch=(patch, patch, patch),
            batch_size=1,
            mode=args.child,
        )
        net = Supernet(space, 1, CLASSES, mode=args.child)
        net.set_temperature(1.0)
        searcher = Searcher(
            net,
            config,
            cache_dir=None,
            run_dir=tempfile.gettempdir(),
            device=torch.device("cpu"),
            patch=(patch, patch, patch),
            in_channels=1,
            out_channels=CLASSES,
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )
        batch_w, batch_a = _batch(patch, 1), _batch(patch, 2)

        def step() -> None:
            searcher.weights_step(batch_w)
            searcher.arch_step(batch_a)

        info["params"] = sum(p.numel() for p in net.weight_parameters())
    elif args.child == "child":
        from nasmed.models.derived import DerivedNet
        from nasmed.supernet import sample_genotype

        net = DerivedNet(sample_genotype(space, 0), space, 1, CLASSES)
        opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9, nesterov=True)
        batch = _batch(patch, 1)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(net(batch["image"]), batch["label"]).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
            opt.step()

        info["params"] = sum(p.numel() for p in net.parameters())
    else:
        from monai.networks.nets import DiNTS, TopologySearch

        dints_space = TopologySearch(
            channel_mul=0.5, num_blocks=12, num_depths=4, use_downsample=True, spatial_dims=3
        )
        net = DiNTS(dints_space, in_channels=1, num_classes=CLASSES, use_downsample=True)
        weights = net.weight_parameters()
        opt = torch.optim.SGD(weights, lr=1e-2, momentum=0.9, nesterov=True)
        batch = _batch(patch, 1)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(net(batch["image"]), batch["label"]).backward()
            opt.step()

        info["params"] = sum(p.numel() for p in weights)
    net.train()
    # the process' peak before the first step: imports, the network, its parameters
    base_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"params": info["params"], "base_gb": base_gb}), flush=True)
    seconds = []
    for _ in range(1 + args.steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
        print(json.dumps({"step_s": seconds[-1]}), flush=True)
    return info


# --- parent -------------------------------------------------------------------------------------


def _available_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return math.inf


def _declared_act_gb(space_name: str, patch: int, config: str) -> float:
    """Declared activation bytes (GB) of the mean child, or of every op (mixed)."""
    import torch

    import searchspaces
    from nasmed.ops import op_cost
    from nasmed.supernet import expected_cost, level_voxels
    from nasmed.supernet.fixed import fixed_cost

    space = searchspaces.load(space_name)
    sides = (patch, patch, patch)
    if config != "mixed":
        zero = {
            k: {
                "ops": torch.zeros(len(space.edges()), len(space.ops)),
                "inputs": torch.zeros(len(space.edges())),
            }
            for k in space.arch_keys()
        }
        cost = expected_cost(zero, space, sides, in_channels=1, out_channels=CLASSES)
        return float(cost["act_bytes"]) / 1e9
    voxels = level_voxels(space, sides)
    act = fixed_cost(space, 1, CLASSES, voxels)[2]
    channels = space.channels()
    for layer in space.layers():
        c = channels[layer.level]
        per_voxel = sum(op_cost(op, 3, in_channels=c, out_channels=c).act_bytes for op in space.ops)
        act += len(space.edges()) * per_voxel * voxels[layer.level]
    return act / 1e9


def _bytes_factor(config: str, space: str, measured: dict[tuple[str, int], float]) -> float:
    """Measured GB of RSS per declared GB of activations for ``config``: the slope between its
    two largest measured patches (sampled: else the child's, which runs the same networks;
    mixed: else against the sampled step at the same patch), else :data:`DEFAULT_BYTES_FACTOR`."""
    sides = sorted(p for c, p in measured if c == config)
    if len(sides) >= 2:
        a, b = sides[-2:]
        act_a, act_b = (_declared_act_gb(space, p, config) for p in (a, b))
        return (measured[(config, b)] - measured[(config, a)]) / (act_b - act_a)
    if config == "sampled":
        child = sorted(p for c, p in measured if c == "child")
        if len(child) >= 2:
            return _bytes_factor("child", space, measured)
    if config == "mixed":
        for p in sides:
            if ("sampled", p) in measured:
                extra = _declared_act_gb(space, p, "mixed") - _declared_act_gb(space, p, "sampled")
                return (measured[("mixed", p)] - measured[("sampled", p)]) / extra
    return DEFAULT_BYTES_FACTOR


def _predict_gb(
    config: str, patch: int, space: str, measured: dict[tuple[str, int], float]
) -> float:
    """Predicted peak RSS (GB) of ``config`` at ``patch``.

    DiNTS: its measured figures (REFERENCE.md §2), scaled by voxels beyond them. nasmed: the RSS
    measured at the largest smaller patch plus the growth of the declared activation bytes times
    :func:`_bytes_factor`; a mixed step not measured yet: the sampled step's RSS at that patch
    plus its extra declared activations times the default factor.
    """
    if config == "dints":
        if patch in DINTS_GB:
            return DINTS_GB[patch]
        side = max(p for p in DINTS_GB if p <= patch) if patch > min(DINTS_GB) else min(DINTS_GB)
        return DINTS_GB[side] * (patch / side) ** 3
    k = _bytes_factor(config, space, measured)
    act = _declared_act_gb(space, patch, config)
    smaller = [p for (c, p) in measured if c == config and p < patch]
    if smaller:
        p0 = max(smaller)
        return measured[(config, p0)] + (act - _declared_act_gb(space, p0, config)) * k
    if config == "mixed":
        base = measured.get(("sampled", patch), 1.0)
        return base + (act - _declared_act_gb(space, patch, "sampled")) * k
    return 0.6 + act * k


def _run_child(args: argparse.Namespace, config: str, patch: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(HERE),
        "--child",
        config,
        "--patch",
        str(patch),
        "--space",
        args.space,
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--cpu-allocator",
        args.cpu_allocator,
    ]
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle threads sleep instead of spinning
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, env=env)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > args.timeout:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = [json.loads(line) for line in out.read().splitlines() if line.startswith("{")]
    result: dict[str, Any] = {"wall_s": time.perf_counter() - start}
    result["peak_rss_gb"] = usage.ru_maxrss / 2**20  # KiB on Linux
    steps = [line["step_s"] for line in lines if "step_s" in line]
    for line in lines:
        if "params" in line:
            result["params"] = line["params"]
            result["step_gb"] = result["peak_rss_gb"] - line["base_gb"]
    if steps:
        result["warmup_s"] = steps[0]
    if len(steps) > 1:
        result["s_per_step"] = statistics.median(steps[1:])
        result["steps_timed"] = len(steps) - 1
    elif len(steps) == 1:
        result["s_per_step"] = steps[0]  # only the warm-up step finished
        result["steps_timed"] = 0
    if timed_out:
        result["note"] = f"stopped after {args.timeout:.0f} s ({len(steps)} step(s) done)"
    elif proc.returncode != 0:
        result["error"] = f"exit status {proc.returncode}"
    return result


def _space_sizes(space_name: str) -> dict[str, str]:
    import searchspaces

    space = searchspaces.load(space_name)
    return {
        space_name: f"10^{math.log10(space.size()):.1f}",
        "dints": f"10^{math.log10(dints_space_size()):.1f}",
    }


def dints_space_size(num_blocks: int = 12, num_depths: int = 4, num_ops: int = 5) -> int:
    """Number of DiNTS architectures: path patterns over the blocks times ops per active path.

    Each block has ``3 * depths - 2`` paths (same depth, one up, one down); a pattern is valid when
    its source nodes are exactly the nodes the previous block activated (every active node feeds
    a path, the rule of MONAI's ``transfer_mtx``); the first block's inputs are every depth (the
    stems). Each active path takes one of ``num_ops`` cell operations.
    """
    import numpy as np

    paths = 3 * num_depths - 2
    transitions = []
    for bits in itertools.product((0, 1), repeat=paths):
        if not any(bits):
            continue
        m = np.zeros((num_depths, num_depths), dtype=int)
        for i, b in enumerate(bits):
            m[(i + 1) // 3, (i + 1) // 3 - 1 + (i + 1) % 3] = b
        src = tuple(int(v) for v in (m.sum(1) > 0))
        dst = tuple(int(v) for v in (m.sum(0) > 0))
        transitions.append((src, dst, sum(bits)))
    counts = {tuple([1] * num_depths): 1}
    for _ in range(num_blocks):
        nxt: dict[tuple[int, ...], int] = {}
        for state, n in counts.items():
            for src, dst, k in transitions:
                if src == state:
                    nxt[dst] = nxt.get(dst, 0) + n * num_ops**k
        counts = nxt
    return sum(counts.values())


def _table(rows: list[dict[str, Any]], sizes: dict[str, str], space: str) -> str:
    lines = [
        "| config | space (size) | patch | params (M) | s/step | peak RSS GB | step GB | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = "dints" if r["config"] == "dints" else space
        if "s_per_step" in r:
            note = r.get("note", "")
            if r.get("steps_timed") == 0:
                note = (note + "; " if note else "") + "s/step of the warm-up step only"
            cells = [
                f"{r['params'] / 1e6:.1f}",
                f"{r['s_per_step']:.2f}",
                f"{r['peak_rss_gb']:.2f}",
                f"{r['step_gb']:.2f}",
                note,
            ]
        else:
            cells = ["", "", "", "", r.get("note", r.get("error", ""))]
        lines.append(
            f"| {r['config']} | {name} ({sizes[name]}) | {r['patch']}^3 | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    got = {(r["config"], r["patch"]): r for r in rows if "s_per_step" in r}
    out = []

    def check(label: str, value: float | None, limit: float) -> None:
        if value is None:
            out.append(f"- {label}: not measured")
        else:
            verdict = "met" if value <= limit else "NOT met"
            out.append(f"- {label}: {value:.2f} (target <= {limit}) -> {verdict}")

    def ratio(a: tuple[str, int], b: tuple[str, int], key: str) -> float | None:
        if a in got and b in got:
            return float(got[a][key] / got[b][key])
        return None

    for patch in sorted({p for _, p in got}):
        check(
            f"{patch}^3 sampled / child peak RSS",
            ratio(("sampled", patch), ("child", patch), "peak_rss_gb"),
            1.3,
        )
        check(
            f"{patch}^3 sampled / mixed peak RSS",
            ratio(("sampled", patch), ("mixed", patch), "peak_rss_gb"),
            0.25,
        )
        check(
            f"{patch}^3 sampled / mixed step memory (peak minus the RSS before the first step)",
            ratio(("sampled", patch), ("mixed", patch), "step_gb"),
            0.25,
        )
    check(
        "64^3 sampled / DiNTS peak RSS", ratio(("sampled", 64), ("dints", 64), "peak_rss_gb"), 0.25
    )
    check("64^3 sampled / DiNTS s/step", ratio(("sampled", 64), ("dints", 64), "s_per_step"), 0.33)
    big = got.get(("sampled", 128))
    check("128^3 sampled peak RSS GB", big["peak_rss_gb"] if big else None, 8.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, nargs="+", default=[32, 64, 96, 128])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--space", default="scnas")
    parser.add_argument(
        "--steps",
        dest="steps_small",
        type=int,
        default=2,
        help="timed steps after one warm-up up to 64^3 (default 2; larger patches: 1)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-gb", type=float, default=18.0)
    parser.add_argument(
        "--timeout", type=float, default=240.0, help="seconds per configuration (default 240)"
    )
    parser.add_argument(
        "--cpu-allocator",
        choices=[a.value for a in CpuAllocator],
        default="lean",
        help="the CPU allocator policy of every configuration (default lean, as nasmed search)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--patch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        configure_cpu_allocator(args.cpu_allocator)  # before torch starts its threads
        args.steps = args.steps_small
        _child(args)
        return 0
    sizes = _space_sizes(args.space)
    measured: dict[tuple[str, int], float] = {}
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for patch in args.patches:
        args.steps = args.steps_small if patch <= 64 else 1
        for config in args.configs:
            row: dict[str, Any] = {"config": config, "patch": patch}
            predicted = _predict_gb(config, patch, args.space, measured)
            limit = min(args.max_gb, 0.9 * _available_gb())
            row["predicted_gb"] = predicted
            if predicted > limit:
                row["note"] = (
                    f"skipped (does not fit: predicted {predicted:.1f} GB > {limit:.1f} GB)"
                )
            else:
                row.update(_run_child(args, config, patch))
                if "peak_rss_gb" in row:
                    measured[(config, patch)] = row["peak_rss_gb"]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(_table(rows, sizes, args.space))
    print()
    print("\n".join(_targets(rows)))
    print(f"\nCPU allocator {args.cpu_allocator}; total {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"sizes": sizes, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
