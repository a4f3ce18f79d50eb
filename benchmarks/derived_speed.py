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
from nasmed.genotype import Genotype, genotype_space
from nasmed.models.baselines import make_dynunet, make_unet
from nasmed.models.derived import DerivedNet, genotype_plans
from nasmed.ops.profile import SavedTensors
from nasmed.supernet import sample_genotype
from nasmed.supernet.cell import Cell
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
        return statistics.mean(self.losses) if self.losses else float("nan")


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
    loss_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    make_loss_net: Callable[[], nn.Module] | None = None,
) -> Row:
    """Params, FLOPs and saved bytes at ``data``; losses after ``steps`` on ``loss_data``
    (default ``data``) with ``make_loss_net`` (default ``make``; a baseline is rebuilt for the
    loss patch, whose levels may differ)."""
    x, y = data
    torch.manual_seed(0)
    net = make().train()
    saved = _saved_mb(net, x, y, make_seg_loss())
    row = Row(name, kind, patch, _count(net), _flops(net, x), 0.0, saved)
    del net
    lx, ly = loss_data if loss_data is not None else data
    for seed in seeds if steps else ():
        loss, dice, _ = _train(make_loss_net or make, lx, ly, steps, seed)
        row.losses.append(loss)
        row.small_dice.append(dice)
    logging.info("%s %d^3: loss %s", name, patch, row.losses)
    return row


def _fwd_bwd(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Median seconds of 2 forward + backward passes of ``module`` at ``x`` (after a warm-up)."""
    times = []
    for _ in range(3):
        z = x.detach().requires_grad_(x.is_floating_point())
        start = time.perf_counter()
        out = module(z)
        out.sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def breakdown(name: str, model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> str:
    """Where a derived network's forward + backward time goes: per level, the cells' DAGs, entry
    blocks and output projections (each timed alone at its real input), the full-resolution
    parts, and the top aten ops of the whole pass (``torch.profiler``, self CPU time)."""
    assert isinstance(model, DerivedNet)
    net, plans = model.net, genotype_plans(model.genotype)
    x = data[0]
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        cell.register_forward_pre_hook(
            lambda _m, args, key=key: inputs.__setitem__(key, args[0].detach())
        )
        for key, cell in [
            *net.cells.items(),
            *(
                (f"top {kind} {level}", m)
                for kind in ("enc", "up", "dec")
                for level, m in getattr(net, f"top_{kind}").items()
            ),
        ]
    ]
    parts: dict[str, float] = {}
    with torch.no_grad():
        model.eval()(x)
    for hook in hooks:
        hook.remove()
    model.train()
    for layer in net.layers:
        cell, inp = net.cells[layer.name], inputs[layer.name]
        assert isinstance(cell, Cell)
        level = f"level {layer.level}"
        total = _fwd_bwd(lambda z, c=cell, p=plans[layer.key]: c(z, p), inp)  # type: ignore[misc]
        entry = 0.0 if isinstance(cell.entry, nn.Identity) else _fwd_bwd(cell.entry, inp)
        with torch.no_grad():
            node = cell.entry(inp)
        proj = 0.0
        if cell.project is not None:
            cat = torch.randn(node.shape[0], node.shape[1] * cell.nodes, *node.shape[2:])
            proj = _fwd_bwd(cell.project, cat)
        for part, seconds in (
            ("cells (all)", total),
            ("entries", entry),
            ("projections", proj),
            ("ops + sums", total - entry - proj),
        ):
            parts[f"{level} {part}"] = parts.get(f"{level} {part}", 0.0) + seconds
    for kind in ("enc", "up", "dec"):  # the fixed top levels (fixed_levels)
        for level, block in getattr(net, f"top_{kind}").items():
            part = f"level {level} fixed blocks"
            seconds = _fwd_bwd(block, inputs[f"top {kind} {level}"])
            parts[part] = parts.get(part, 0.0) + seconds
    full = 0.0
    with torch.no_grad():
        stem = net.stem(x)
        level0 = net.down(stem) if net.down is not None else stem
    full += _fwd_bwd(net.stem, x) if not isinstance(net.stem, nn.Identity) else 0.0
    if net.down is not None:
        parts["stride-2 stem block"] = _fwd_bwd(net.down, stem)
    head_in = level0 if net.up is None else torch.randn(stem.shape)
    if net.up is not None:
        full += _fwd_bwd(net.up, level0)
    full += _fwd_bwd(net.head, head_in)
    parts["full resolution (stem, up, head)"] = full
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _logits(model(x)).sum().backward()
    model.zero_grad(set_to_none=True)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total_us = sum(e.self_cpu_time_total for e in events)
    lines = [f"{name}: forward + backward seconds by part (each timed alone)"]
    lines += [f"  {part:34s} {seconds:7.3f}" for part, seconds in parts.items()]
    lines.append(f"  top aten ops (self CPU, of {total_us / 1e6:.3f} s profiled):")
    for e in events[:8]:
        share = 100 * e.self_cpu_time_total / total_us
        lines.append(f"    {e.key:40s} {e.self_cpu_time_total / 1e6:7.3f} s {share:5.1f} %")
    return "\n".join(lines)


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
        out.append((f"{g.space} {Path(args.genotype).name}", genotype_space(g), g))
    return out


def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for patch in args.patches:
        data = _batch(patch, args.batch)
        lp = args.loss_patch or patch
        loss_data = data if lp == patch else _batch(lp, args.batch)
        derived: list[Row] = []
        makers: list[Callable[[], nn.Module]] = []
        for name, space, g in _genotypes(args):
            space.check_patch((patch,) * 3)
            make = functools.partial(DerivedNet, g, space, 1, CLASSES, width=args.width)
            makers.append(make)
            derived.append(
                measure(name, "derived", make, patch, data, args.steps, args.seeds, loss_data)
            )
            if args.breakdown:
                logging.info("%s", breakdown(name, make(), data))
        target = statistics.median(r.params for r in derived) if derived else 2.6e6
        sides = (patch,) * 3
        unet = functools.partial(make_unet, 1, CLASSES, patch=sides)
        dyn = functools.partial(make_dynunet, 1, CLASSES, patch=sides, spacing=SPACING)
        unet_w = _matched_width(lambda w: unet(width=w), target)  # noqa: B023
        dyn_w = _matched_width(lambda w: dyn(width=w), target)  # noqa: B023
        loss_sides = (lp,) * 3
        baselines: dict[str, tuple[str, Callable[[], nn.Module], Callable[[], nn.Module]]] = {
            "unet": (
                f"MONAI UNet (width {unet_w:.2f})",
                functools.partial(unet, width=unet_w),
                functools.partial(make_unet, 1, CLASSES, patch=loss_sides, width=unet_w),
            ),
            "dynunet": (
                f"DynUNet (width {dyn_w:.2f})",
                functools.partial(dyn, width=dyn_w),
                functools.partial(
                    make_dynunet, 1, CLASSES, patch=loss_sides, spacing=SPACING, width=dyn_w
                ),
            ),
        }
        here = list(derived)
        for kind in args.baselines:
            name, make_base, make_loss = baselines[kind]
            makers.append(make_base)
            here.append(
                measure(
                    name, kind, make_base, patch, data, args.steps, args.seeds, loss_data, make_loss
                )
            )
        for row, seconds in zip(here, time_round_robin(makers, data, args.time_rounds)):
            row.s_step = seconds
            logging.info(
                "%s %d^3: %.3f s/step, %.2f M params", row.name, patch, seconds, row.params / 1e6
            )
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
        best_loss = min(r.loss for r in base) if args.steps else float("nan")
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
            verdict = (
                f"{space} at {patch}^3: median s/step {step:.2f}x the faster baseline "
                f"(target <= {STEP_TARGET}: {'met' if step <= STEP_TARGET else 'not met'})"
            )
            if args.steps:
                loss = statistics.median(r.loss for r in mine) / best_loss
                verdict += (
                    f"; median loss {loss:.2f}x the better baseline's "
                    f"(target <= {LOSS_TARGET}: {'met' if loss <= LOSS_TARGET else 'not met'})"
                )
            verdicts.append(verdict)
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
    parser.add_argument(
        "--steps", type=int, help="training steps (default 200; --quick: 20; 0: no training)"
    )
    parser.add_argument(
        "--loss-patch",
        type=int,
        help="train the losses at this side instead of each --patches side (widths still matched "
        "at the timed patch)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="log where each derived network's step time goes (per level and part, top aten ops)",
    )
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
    if args.json:  # before the report: the numbers survive a failing report
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    print(report(rows, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
