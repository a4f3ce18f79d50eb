"""Memory and time of one step with the engine's switches: AMP (bf16) and activation checkpointing.

Each configuration runs in its own subprocess (``torch.set_num_threads(--threads)``, random images,
3 classes, batch 2): ``train`` is one :class:`~nasmed.train.trainer.Trainer`-style step (SGD) of
MONAI's UNet under :class:`~nasmed.engine.precision.Precision`; ``search`` is the
:class:`~nasmed.search.searcher.Searcher`'s own ``weights_step`` + ``arch_step`` on the
``scnas-small`` supernet. Switches: ``fp32`` or ``bf16`` autocast, activation checkpointing off
or on (:func:`~nasmed.engine.activation.enable_activation_checkpointing`). "Step MB" is the
subprocess' peak RSS minus its RSS before the first step (what the steps added: activations,
gradients, optimiser state); seconds per step are the median of ``--steps`` after one warm-up.

Usage::

    python benchmarks/engine_memory.py --patch 48 --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

CLASSES = 3
CONFIGS = [
    (kind, amp, ckpt)
    for kind in ("train", "search")
    for amp in (False, True)
    for ckpt in (False, True)
]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(kind: str, amp: bool, ckpt: bool, patch: int, steps: int) -> dict[str, Any]:
    import torch

    import searchspaces
    from nasmed.engine.activation import enable_activation_checkpointing
    from nasmed.engine.precision import Precision, resolve_precision
    from nasmed.models.baselines import make_unet
    from nasmed.search.config import SearchConfig
    from nasmed.search.searcher import Searcher
    from nasmed.supernet import Supernet

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    p3 = (patch, patch, patch)

    def batch(seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return {
            "image": torch.randn(2, 1, *p3, generator=g),
            "label": torch.randint(0, CLASSES, (2, 1, *p3), generator=g),
        }

    if kind == "train":
        from nasmed.train.losses import make_seg_loss

        net = make_unet(1, CLASSES, width=0.5, patch=p3)
        if ckpt:
            enable_activation_checkpointing(net)
        precision = Precision(resolve_precision(amp, "auto", cpu), cpu)
        opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
        loss_fn = make_seg_loss()
        b = batch(1)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with precision.autocast():
                out = net(b["image"])
            loss = loss_fn(out.float(), b["label"])
            precision.backward(loss)
            precision.step(opt, net.parameters(), 12.0)

    else:
        config = SearchConfig(
            space="scnas-small",
            epochs=2,
            warmup_epochs=1,
            steps_per_epoch=1,
            patch=p3,
            batch_size=2,
            amp=amp,
            activation_checkpointing=ckpt,
        )
        sn = Supernet(searchspaces.load("scnas-small"), 1, CLASSES)
        searcher = Searcher(
            sn,
            config,
            cache_dir=None,
            run_dir=tempfile.gettempdir(),
            device=cpu,
            patch=p3,
            in_channels=1,
            out_channels=CLASSES,
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )
        bw, ba = batch(1), batch(2)

        def step() -> None:
            searcher.weights_step(bw)
            searcher.arch_step(ba)

    before = _rss_mb()
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_mb": peak - before, "step_s": statistics.median(times[1:])}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        kind, amp, ckpt = args.child[0], args.child[1] == "1", args.child[2] == "1"
        print(json.dumps(_child(kind, amp, ckpt, args.patch, args.steps)))
        return
    print(f"patch {args.patch}^3, batch 2, {args.threads} thread(s), median of {args.steps} steps")
    print("| step | precision | activation ckpt | step MB | s/step |")
    print("|---|---|---|---|---|")
    for kind, amp, ckpt in CONFIGS:
        cmd = [
            sys.executable,
            __file__,
            "--patch",
            str(args.patch),
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
            "--child",
            kind,
            str(int(amp)),
            str(int(ckpt)),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {kind} | {'bf16' if amp else 'fp32'} | {'on' if ckpt else 'off'} | "
            f"{r['step_mb']:.0f} | {r['step_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
