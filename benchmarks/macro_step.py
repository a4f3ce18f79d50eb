"""Does a macro supernet's step cost about one child? (issue 14, "Macro choices")

For random genotypes of ``scnas-macro`` (random strides and widths), one forward + backward pass
of the supernet running that child (its sliced widest kernels, ``make_dynamic``) against the
derived network of the same genotype: median seconds of ``--repeats`` passes, measured
round-robin (supernet, child, supernet, ...) so load on a shared machine hits both alike, and
the bytes autograd saves for the backward pass (``nasmed.ops.profile.SavedTensors``; the
supernet's sliced kernels count as their full storages).

    PYTHONPATH=. python benchmarks/macro_step.py [--patch 32 32 32] [--genotypes 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import searchspaces
from nasmed.models.derived import DerivedNet
from nasmed.ops.profile import SavedTensors
from nasmed.supernet import Supernet, genotype_plans, sample_genotype


def _pass(module: torch.nn.Module, x: torch.Tensor, **kw: object) -> float:
    start = time.perf_counter()
    module(x, **kw).float().mean().backward()
    return time.perf_counter() - start


def _saved(module: torch.nn.Module, x: torch.Tensor, **kw: object) -> int:
    with SavedTensors() as saved:
        out = module(x, **kw)
    out.float().mean().backward()
    return saved.bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="scnas-macro")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 32, 32])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--genotypes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = searchspaces.load(args.space)
    supernet = Supernet(space, 1, 2).train()
    x = torch.randn(args.batch, 1, *args.patch)
    rows = []
    for seed in range(args.genotypes):
        g = sample_genotype(space, seed)
        child = DerivedNet(g, space, 1, 2).train()
        plans = genotype_plans(g)
        _pass(supernet, x, plans=plans)  # warm-up
        _pass(child, x)
        s_times, c_times = [], []
        for _ in range(args.repeats):
            supernet.zero_grad(set_to_none=True)
            s_times.append(_pass(supernet, x, plans=plans))
            child.zero_grad(set_to_none=True)
            c_times.append(_pass(child, x))
        s_mb = _saved(supernet, x, plans=plans) / 2**20
        c_mb = _saved(child, x) / 2**20
        s, c = statistics.median(s_times), statistics.median(c_times)
        strides = " ".join("".join(map(str, st)) for st in g.level_strides(space))
        widths = " ".join(f"{w:g}" for w in g.level_widths(space))
        rows.append((seed, strides, widths, s, c, s / c, s_mb, c_mb, s_mb / c_mb))
    print(
        f"space {args.space}, patch {'x'.join(map(str, args.patch))}, batch {args.batch}, "
        f"{args.threads} thread(s), median of {args.repeats} forward+backward passes"
    )
    header = ["seed", "strides", "widths", "supernet s", "child s", "ratio"]
    header += ["supernet MB", "child MB", "ratio"]
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, st, w, s, c, r, smb, cmb, rm in rows:
        cells = [str(seed), st, w, f"{s:.3f}", f"{c:.3f}", f"{r:.2f}"]
        cells += [f"{smb:.0f}", f"{cmb:.0f}", f"{rm:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
