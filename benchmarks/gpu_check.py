"""One GPU check: the ``cuda`` tests, then CUDA comparisons with MONAI, printed as one table.

Rows (each measured in this process, one after another, peak memory reset in between):

- ``pytest -m cuda``: the GPU readiness tests (``tests/nasmed/test_cuda.py``): passed/failed/
  skipped counts.
- ``search step (nasmed sampled)`` vs ``search step (MONAI DiNTS)``: one weights step + one
  architecture step of nasmed's :class:`~nasmed.search.searcher.Searcher` on the ``scnas``
  supernet, against one weights step of MONAI's ``DiNTS`` over ``TopologySearch(channel_mul=0.5,
  num_blocks=12, num_depths=4)``, batch 1 at ``--patch``^3 (96 by default).
- ``AMP train step (nasmed child)`` vs ``AMP train step (MONAI DynUNet)``: one SGD step under
  ``torch.autocast(float16)`` with a ``GradScaler``, Dice + CE, batch 2 at ``--train-patch``^3.
- ``GPipe plain`` vs ``GPipe 2 partitions, 4 chunks``: one training step of a derived network,
  batch 4 at ``--train-patch``^3, without and with nasmed's torchgpipe pipeline (``cuda:0`` twice
  on one GPU, activation checkpointing ``always``).

Columns: median seconds per step over ``--steps`` steps after one warm-up, peak memory
(``torch.cuda.max_memory_allocated`` on CUDA; ``n/a`` on the CPU), parameters, and the ratio of
each pair (time and memory of the second row over the first).

Usage::

    benchmarks/gpu_check.sh                    # on a GPU machine (< 8 minutes)
    python benchmarks/gpu_check.py --dry-run   # on a CPU: tiny shapes, checks the script runs
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 3


def _batch(patch: int, n: int, device: Any, seed: int) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    shape = (n, 1, patch, patch, patch)
    return {
        "image": torch.randn(shape, generator=g).to(device),
        "label": torch.randint(0, CLASSES, shape, generator=g).to(device),
    }


def _measure(step: Callable[[], None], steps: int, device: Any) -> tuple[float, float | None]:
    """Median seconds per step after a warm-up, and peak memory (GiB, CUDA only)."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(1 + steps):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return statistics.median(times), peak


def _search_nasmed(patch: int, device: Any) -> tuple[Callable[[], None], int]:
    import torch

    import searchspaces
    from nasmed.search.config import SearchConfig
    from nasmed.search.searcher import Searcher
    from nasmed.supernet import Supernet

    space = searchspaces.load("scnas")
    p3 = (patch, patch, patch)
    config = SearchConfig(
        space="scnas", epochs=2, warmup_epochs=1, steps_per_epoch=1, patch=p3, batch_size=1
    )
    net = Supernet(space, 1, CLASSES, mode="sampled").to(device)
    net.set_temperature(1.0)
    searcher = Searcher(
        net,
        config,
        cache_dir=None,
        run_dir=tempfile.mkdtemp(prefix="gpu_check_"),
        device=device,
        patch=p3,
        in_channels=1,
        out_channels=CLASSES,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    bw, ba = _batch(patch, 1, device, 1), _batch(patch, 1, device, 2)

    def step() -> None:
        searcher.weights_step(bw)
        searcher.arch_step(ba)

    return step, sum(p.numel() for p in net.weight_parameters())


def _search_dints(patch: int, device: Any) -> tuple[Callable[[], None], int]:
    import torch
    from monai.networks.nets import DiNTS, TopologySearch

    from nasmed.train.losses import make_seg_loss

    space = TopologySearch(
        channel_mul=0.5, num_blocks=12, num_depths=4, use_downsample=True, spatial_dims=3
    )
    net = DiNTS(space, in_channels=1, num_classes=CLASSES, use_downsample=True).to(device)
    weights = net.weight_parameters()
    opt = torch.optim.SGD(weights, lr=1e-2, momentum=0.9, nesterov=True)
    loss_fn, b = make_seg_loss(), _batch(patch, 1, device, 1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(b["image"]), b["label"]).backward()
        opt.step()

    return step, sum(p.numel() for p in weights)


def _child_net() -> Any:
    import searchspaces
    from nasmed.models.derived import DerivedNet
    from nasmed.supernet import sample_genotype

    space = searchspaces.load("scnas")
    return DerivedNet(sample_genotype(space, 0), space, 1, CLASSES)


def _amp_step(net: Any, patch: int, batch: int, device: Any) -> Callable[[], None]:
    import torch

    from nasmed.train.losses import make_seg_loss

    net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn, b = make_seg_loss(), _batch(patch, batch, device, 1)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = net(b["image"])
        scaler.scale(loss_fn(out.float(), b["label"])).backward()
        scaler.step(opt)
        scaler.update()

    return step


def _amp_nasmed(patch: int, device: Any) -> tuple[Callable[[], None], int]:
    net = _child_net()
    return _amp_step(net, patch, 2, device), sum(p.numel() for p in net.parameters())


def _amp_dynunet(patch: int, device: Any) -> tuple[Callable[[], None], int]:
    from nasmed.models.baselines import make_dynunet

    net = make_dynunet(1, CLASSES, patch=(patch,) * 3, spacing=(1.0, 1.0, 1.0))
    return _amp_step(net, patch, 2, device), sum(p.numel() for p in net.parameters())


def _gpipe(chunks: int) -> Callable[[int, Any], tuple[Callable[[], None], int]]:
    def make(patch: int, device: Any) -> tuple[Callable[[], None], int]:
        import torch

        from nasmed.pipeline import PipelineConfig, build_pipeline
        from nasmed.train.losses import make_seg_loss

        model = _child_net().to(device)
        net: torch.nn.Module = model
        loss_fn, b = make_seg_loss(), _batch(patch, 4, device, 1)
        if chunks:
            dev = str(device) if device.type == "cpu" else "cuda:0"
            net = build_pipeline(
                model,
                PipelineConfig(devices=(dev, dev), chunks=chunks),
                sample=b["image"][:1],
                batch_size=4,
            )
        opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.99, nesterov=True)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            out = net(b["image"])
            loss_fn(out, b["label"].to(out.device)).backward()
            opt.step()

        return step, sum(p.numel() for p in model.parameters())

    return make


def _pytest_row(dry_run: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "tests/nasmed/test_cuda.py", "-m", "cuda", "-q"]
    cmd += ["-p", "no:xdist", "-p", "no:cacheprovider"]
    if dry_run:
        cmd.append("--collect-only")
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    tail = (done.stdout.strip().splitlines() or [""])[-1]
    counts = ", ".join(
        f"{n} {w}"
        for n, w in re.findall(r"(\d+) (passed|failed|skipped|error|tests? collected)", tail)
    )
    return {
        "name": "pytest -m cuda" + (" (collect only)" if dry_run else ""),
        "result": counts or tail or f"exit {done.returncode}",
        "seconds": time.perf_counter() - start,
        "ok": done.returncode == 0,
    }


PAIRS: list[tuple[str, Callable[..., Any], str, Callable[..., Any], str]] = [
    ("search step (nasmed sampled)", _search_nasmed, "search step (MONAI DiNTS)", _search_dints,
     "patch"),
    ("AMP train step (nasmed child)", _amp_nasmed, "AMP train step (MONAI DynUNet)", _amp_dynunet,
     "train_patch"),
    ("GPipe plain, batch 4", _gpipe(0), "GPipe 2 partitions, 4 chunks", _gpipe(4), "train_patch"),
]  # fmt: skip


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cuda, cpu")
    parser.add_argument("--patch", type=int, default=96, help="search comparison patch side")
    parser.add_argument("--train-patch", type=int, default=96, help="AMP / GPipe patch side")
    parser.add_argument(
        "--steps", type=int, default=3, help="timed steps per row (after 1 warm-up)"
    )
    parser.add_argument("--no-pytest", action="store_true", help="skip the pytest row")
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, 32^3, 1 step, pytest collect-only: a check"
    )
    args = parser.parse_args(argv)
    import torch

    if args.dry_run:
        args.device, args.patch, args.train_patch, args.steps = "cpu", 32, 32, 1
        torch.set_num_threads(1)
    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(dev)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    lines = [
        f"GPU check on {name} (torch {torch.__version__})",
        "",
        "| check | patch | s/step | peak GiB | params | vs previous (time, memory) |",
        "|---|---|---|---|---|---|",
    ]
    ok = True
    if not args.no_pytest:
        row = _pytest_row(args.dry_run)
        ok &= row["ok"]
        lines.append(f"| {row['name']} | | {row['seconds']:.0f} s total | | | {row['result']} |")
    for first_name, first, second_name, second, key in PAIRS:
        patch = getattr(args, key)
        results = []
        for label, make in ((first_name, first), (second_name, second)):
            try:
                step, params = make(patch, device)
                sec, peak = _measure(step, args.steps, device)
                results.append((label, sec, peak, params, None))
            except Exception as exc:  # a row fails, the table goes on
                ok = False
                msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:80]
                results.append((label, None, None, None, f"{type(exc).__name__}: {msg}"))
            finally:
                step = None  # type: ignore[assignment]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        base = results[0]
        for i, (label, sec, peak, params, err) in enumerate(results):
            ratio = ""
            if err:
                ratio = err
            elif i == 1 and base[1] and sec:
                mem = f"{peak / base[2]:.2f}x" if peak and base[2] else "n/a"
                ratio = f"{sec / base[1]:.2f}x, {mem}"
            lines.append(
                f"| {label} | {patch}^3 | {_fmt(sec)} | {_fmt(peak)} | "
                f"{params if params is not None else 'n/a':,} | {ratio} |"
                if params is not None
                else f"| {label} | {patch}^3 | n/a | n/a | n/a | {ratio} |"
            )
    print("\n".join(lines), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
