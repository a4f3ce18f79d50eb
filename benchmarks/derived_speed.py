"""Do derived networks train as well per second as a U-Net? Side by side, in one process.

For the derived networks of ``--random`` uniformly sampled genotypes of each space in
``--spaces`` (and of ``--genotype FILE`` if given), MONAI's residual ``UNet`` and the nnU-Net-like
``DynUNet`` of the plan (:mod:`nasmed.models.baselines`, widths scaled so that their parameter
count matches the derived networks' median), at each ``--patches`` side, on CPU:

- params;
- GFLOP of one forward + backward pass per sample, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls; norms are not counted);
- s/step: median seconds of an AdamW step at ``--batch``, timed round-robin (``--time-rounds``
  rounds of one step per network, after a warm-up step each), so a change in the machine's load
  hits every network alike;
- step MB: bytes autograd saves for the backward pass in one step (``saved_tensors_hooks``,
  unique storages), the activation memory a step adds whatever the allocator does;
- the Dice + CE loss after ``--steps`` AdamW steps (lr 1e-3) on a fixed batch of synthetic
  phantom cases (:func:`decathlon.phantom.synthesize_case`, 2 foreground classes), one run per
  ``--seeds`` seed, and the smallest class' Dice on that batch after training.

Then the issue's targets, met or not: a derived network's s/step at most 1.5x the faster
baseline's, its loss within 1.2x of the better baseline's (median over genotypes). The epoch
target of ``nasmed train`` and the search-step memory targets are measured by other scripts
(``search_memory.py``). Timings on a loaded machine are only meaningful as ratios within one run.

Usage::

    python benchmarks/derived_speed.py                         # 64^3 and 96^3, 200 steps, 2 seeds
    python benchmarks/derived_speed.py --quick                 # 32^3, 20 steps: ratios only
    python benchmarks/derived_speed.py --quick --spaces scnas-v1 scnas --random 4
    python benchmarks/derived_speed.py --genotype run/genotype.json --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import searchspaces
from decathlon.phantom import synthesize_case
from nasmed.genotype import Genotype
from nasmed.models.baselines import make_dynunet, make_unet
from nasmed.models.derived import DerivedNet
from nasmed.ops.profile import SavedTensors
from nasmed.supernet import sample_genotype
from nasmed.train.losses import make_seg_loss
from searchspaces import SearchSpace

CLASSES = 3
SPACING = (1.0, 1.0, 1.0)
STEP_TARGET = 1.5
LOSS_TARGET = 1.2


@dataclass
class Row:
    """One network at one patch."""

    name: str
    kind: str  # derived, unet, dynunet
    patch: int
    params: int
    gflop: float
    s_step: float
    step_mb: float
    losses: list[float] = field(default_factory=list)
    small_dice: list[float] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return statistics.mean(self.losses)


def _batch(patch: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for i in range(batch):
        image, label, _ = synthesize_case(7, i, shape=(patch,) * 3, classes=CLASSES - 1)
        image = (image - image.mean()) / (image.std() + 1e-6)
        images.append(torch.from_numpy(np.ascontiguousarray(image)))
        labels.append(torch.from_numpy(label.astype(np.int64))[None])
    return torch.stack(images).float(), torch.stack(labels)


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _logits(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _flops(net: nn.Module, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        _logits(net(x[:1])).sum().backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def _saved_mb(net: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module) -> float:
    with SavedTensors() as saved:
        loss = loss_fn(_logits(net(x)), y)
    loss.backward()
    net.zero_grad(set_to_none=True)
    return saved.bytes / 2**20


def _train(
    make: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, steps: int, seed: int
) -> tuple[float, float, list[float]]:
    """Final loss, smallest-class Dice and per-step seconds of ``steps`` AdamW steps."""
    torch.manual_seed(seed)
    net = make().train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = make_seg_loss()
    times, loss = [], torch.zeros(())
    for _ in range(steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(_logits(net(x)), y)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    net.eval()
    with torch.no_grad():
        pred = _logits(net(x)).argmax(1, keepdim=True)
    counts = torch.bincount(y.flatten(), minlength=CLASSES)
    small = int(counts[1:].argmin()) + 1
    inter = ((pred == small) & (y == small)).sum().item()
    dice = 2 * inter / max(1, (pred == small).sum().item() + (y == small).sum().item())
    return float(loss.detach()), dice, times


def measure(
    name: str,
    kind: str,
    make: Callable[[], nn.Module],
    patch: int,
    data: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    seeds: Sequence[int],
) -> Row:
    x, y = data
    torch.manual_seed(0)
    net = make().train()
    saved = _saved_mb(net, x, y, make_seg_loss())
    row = Row(name, kind, patch, _count(net), _flops(net, x), 0.0, saved)
    del net
    for seed in seeds:
        loss, dice, _ = _train(make, x, y, steps, seed)
        row.losses.append(loss)
        row.small_dice.append(dice)
    logging.info("%s %d^3: loss %s", name, patch, row.losses)
    return row


def time_round_robin(
    makers: Sequence[Callable[[], nn.Module]], data: tuple[torch.Tensor, torch.Tensor], rounds: int
) -> list[float]:
    """Median s/step of each network, one step each per round (after a warm-up step each)."""
    x, y = data
    loss_fn = make_seg_loss()
    nets, opts = [], []
    for make in makers:
        torch.manual_seed(0)
        net = make().train()
        nets.append(net)
        opts.append(torch.optim.AdamW(net.parameters(), lr=1e-3))
    times: list[list[float]] = [[] for _ in nets]
    for r in range(rounds + 1):
        for i, (net, opt) in enumerate(zip(nets, opts)):
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(_logits(net(x)), y).backward()
            opt.step()
            if r:  # round 0 warms up
                times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def _matched_width(factory: Callable[[float], nn.Module], params: float) -> float:
    """Width at which ``factory(width)`` has about ``params`` parameters (bisection)."""
    low, high = 0.1, 4.0
    for _ in range(20):
        mid = (low + high) / 2
        if _count(factory(mid)) < params:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _genotypes(args: argparse.Namespace) -> list[tuple[str, SearchSpace, Genotype]]:
    out = []
    for spec in args.spaces:
        space = searchspaces.load(spec)
        for seed in range(args.random):
            out.append((f"{space.name} random {seed}", space, sample_genotype(space, seed)))
    if args.genotype:
        g = Genotype.load(args.genotype)
        out.append((f"{g.space} {Path(args.genotype).name}", searchspaces.load(g.space), g))
    return out


def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for patch in args.patches:
        data = _batch(patch, args.batch)
        derived: list[Row] = []
        makers: list[Callable[[], nn.Module]] = []
        for name, space, g in _genotypes(args):
            space.check_patch((patch,) * 3)
            make = functools.partial(DerivedNet, g, space, 1, CLASSES, width=args.width)
            makers.append(make)
            derived.append(measure(name, "derived", make, patch, data, args.steps, args.seeds))
        target = statistics.median(r.params for r in derived) if derived else 2.6e6
        sides = (patch,) * 3
        unet = functools.partial(make_unet, 1, CLASSES, patch=sides)
        dyn = functools.partial(make_dynunet, 1, CLASSES, patch=sides, spacing=SPACING)
        unet_w = _matched_width(lambda w: unet(width=w), target)  # noqa: B023
        dyn_w = _matched_width(lambda w: dyn(width=w), target)  # noqa: B023
        baselines: dict[str, tuple[str, Callable[[], nn.Module]]] = {
            "unet": (f"MONAI UNet (width {unet_w:.2f})", functools.partial(unet, width=unet_w)),
            "dynunet": (f"DynUNet (width {dyn_w:.2f})", functools.partial(dyn, width=dyn_w)),
        }
        here = list(derived)
        for kind in args.baselines:
            name, make_base = baselines[kind]
            makers.append(make_base)
            here.append(measure(name, kind, make_base, patch, data, args.steps, args.seeds))
        for row, seconds in zip(here, time_round_robin(makers, data, args.time_rounds)):
            row.s_step = seconds
        rows += here
    return rows


def report(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"batch {args.batch}, {args.steps} AdamW steps, seeds {list(args.seeds)}, "
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}",
        "",
        "| network | patch | params | GFLOP fwd+bwd/sample | s/step | x faster baseline "
        "| step MB | loss (per seed) | small-class Dice |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for patch in sorted({r.patch for r in rows}):
        here = [r for r in rows if r.patch == patch]
        base = [r for r in here if r.kind != "derived"]
        fastest = min(r.s_step for r in base)
        best_loss = min(r.loss for r in base)
        for r in here:
            losses = " / ".join(f"{v:.3f}" for v in r.losses)
            dice = " / ".join(f"{v:.2f}" for v in r.small_dice)
            lines.append(
                f"| {r.name} | {patch}^3 | {r.params / 1e6:.2f} M | {r.gflop:.2f} | "
                f"{r.s_step:.3f} | {r.s_step / fastest:.2f} | {r.step_mb:.0f} | {losses} | {dice} |"
            )
        spaces = sorted({r.name.split(" ")[0] for r in here if r.kind == "derived"})
        for space in spaces:
            mine = [r for r in here if r.kind == "derived" and r.name.split(" ")[0] == space]
            step = statistics.median(r.s_step for r in mine) / fastest
            loss = statistics.median(r.loss for r in mine) / best_loss
            verdicts.append(
                f"{space} at {patch}^3: median s/step {step:.2f}x the faster baseline "
                f"(target <= {STEP_TARGET}: {'met' if step <= STEP_TARGET else 'not met'}); "
                f"median loss {loss:.2f}x the better baseline's "
                f"(target <= {LOSS_TARGET}: {'met' if loss <= LOSS_TARGET else 'not met'})"
            )
    if args.quick:
        verdicts.append(
            "quick mode (32^3, few steps): a smoke run; the targets are for 64^3 and 96^3 after "
            "200 steps, and only ratios measured side by side in one run mean anything"
        )
    return "\n".join([*lines, "", *verdicts])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", nargs="+", default=["scnas"], help="space names or YAML files")
    parser.add_argument("--genotype", help="also a genotype.json (e.g. a finished search's)")
    parser.add_argument("--random", type=int, default=8, help="random genotypes per space")
    parser.add_argument("--patches", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--steps", type=int, help="training steps (default 200; --quick: 20)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--time-rounds", type=int, default=5, help="timed steps per network")
    parser.add_argument(
        "--baselines", nargs="+", choices=("unet", "dynunet"), default=["unet", "dynunet"]
    )
    parser.add_argument("--width", type=float, default=1.0, help="width of the derived networks")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="32^3, 20 steps unless --steps (a smoke run)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.patches = [32]
    if args.steps is None:
        args.steps = 20 if args.quick else 200
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    rows = run(args)
    print(report(rows, args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
