"""Patch loading: the nasmed cache loader versus a MONAI pipeline doing the same job.

Both draw random patches (one third centred on foreground) from a synthetic MSD task resampled to
the same target spacing and z-scored, batch 2, 2 loader workers:

- nasmed: ``nasmed preprocess`` once (crop, normalise, resample; memory-mappable ``.npy`` per
  case), then :func:`decathlon.sampling.make_loader`.
- MONAI: ``CacheDataset`` over LoadImaged, EnsureChannelFirstd, Spacingd, NormalizeIntensityd,
  SpatialPadd (so patches larger than an image still batch), then RandCropByPosNegLabeld
  (pos 1, neg 2) per draw, ``monai.data.DataLoader`` with persistent workers.

Every configuration runs in its own subprocess; the parent polls the memory of that process and
its children (sum of RSS, and of PSS, which splits shared and memory-mapped pages fairly) and
keeps the peaks. "setup s/case" is nasmed's preprocessing (2 processes) or MONAI's cache build
(2 threads), per case. Prints a markdown table.

``--augment`` instead times nnU-Net's augmentation per patch, side by side in one process and one
thread on the same random patches: nasmed's (MONAI transforms, :mod:`nasmed.train.augment`)
against nnU-Net v2's own (batchgeneratorsv2, ``nnUNetTrainer.get_training_transforms``; needs
nnunetv2 installed). This is how the augmentation's library was chosen.

Usage::

    python benchmarks/loader.py            # 20 cases of 160x160x128, patches 96^3 and 128^3
    python benchmarks/loader.py --quick    # 6 cases of 96x96x64, patches 32^3 and 48^3
    python benchmarks/loader.py --augment [--quick]   # MONAI vs batchgeneratorsv2 per patch
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve()


# --- children ---------------------------------------------------------------------------------


def _child_preprocess(args: argparse.Namespace) -> dict[str, Any]:
    from decathlon.preprocess import run_preprocess

    t0 = time.perf_counter()
    plan = run_preprocess(args.task, args.work, workers=args.workers, folds=2, progress=False)
    elapsed = time.perf_counter() - t0
    return {"setup_s": elapsed, "target_spacing": list(plan.target_spacing)}


def _time_batches(loader: Any, batches: int, warmup: int) -> tuple[float, float]:
    """Seconds for ``batches`` batches after ``warmup``; and the share of patches with
    foreground."""
    seen = fg = 0
    t0 = 0.0
    done = 0
    while done < warmup + batches:
        for batch in loader:
            label = batch["label"]
            if done == warmup:
                t0 = time.perf_counter()
            if done >= warmup:
                seen += label.shape[0]
                fg += int((label.flatten(1) > 0).any(1).sum())
            done += 1
            if done >= warmup + batches:
                break
    return time.perf_counter() - t0, fg / max(seen, 1)


def _child_nasmed(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from decathlon.sampling import make_loader
    from decathlon.splits import load_splits

    torch.set_num_threads(1)
    folds = load_splits(Path(args.work) / "splits.json")
    names = sorted((*folds[0].train, *folds[0].val))
    patch = (args.patch,) * 3
    t0 = time.perf_counter()
    loader = make_loader(
        Path(args.work) / "cache",
        names,
        patch,
        batch_size=args.batch,
        workers=args.workers,
        samples_per_epoch=(args.batches + args.warmup) * args.batch,
        seed=0,
    )
    setup = time.perf_counter() - t0
    seconds, fg = _time_batches(loader, args.batches, args.warmup)
    return {"setup_s": setup, "seconds": seconds, "fg_share": fg}


def _child_monai(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        NormalizeIntensityd,
        RandCropByPosNegLabeld,
        Spacingd,
        SpatialPadd,
    )

    from decathlon.datalist import load_task

    torch.set_num_threads(1)
    task = load_task(args.task)
    files = [{"image": str(c.images[0]), "label": str(c.label)} for c in task.training]
    spacing = json.loads((Path(args.work) / "plan.json").read_text())["target_spacing"]
    patch = (args.patch,) * 3
    keys = ["image", "label"]
    transforms = Compose(
        [
            LoadImaged(keys=keys),
            EnsureChannelFirstd(keys=keys),
            Spacingd(keys=keys, pixdim=spacing, mode=("bilinear", "nearest")),
            NormalizeIntensityd(keys="image", channel_wise=True),
            SpatialPadd(keys=keys, spatial_size=patch),
            RandCropByPosNegLabeld(
                keys=keys, label_key="label", spatial_size=patch, pos=1, neg=2, num_samples=1
            ),
        ]
    )
    transforms.set_random_state(seed=0)
    t0 = time.perf_counter()
    ds = CacheDataset(files, transforms, cache_rate=1.0, num_workers=args.workers, progress=False)
    setup = time.perf_counter() - t0
    loader = DataLoader(
        ds,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=True,
        generator=torch.Generator().manual_seed(0),
    )
    seconds, fg = _time_batches(loader, args.batches, args.warmup)
    return {"setup_s": setup, "seconds": seconds, "fg_share": fg}


def _child_augment(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nasmed.train.augment import AugmentConfig, Augmenter

    torch.set_num_threads(1)
    patch = (args.patch,) * 3
    gen = torch.Generator().manual_seed(0)
    images = [torch.randn(1, *patch, generator=gen) for _ in range(args.batches)]
    labels = [(torch.rand(1, *patch, generator=gen) > 0.8).to(torch.int16) for _ in images]
    monai = Augmenter(AugmentConfig())
    bg = nnUNetTrainer.get_training_transforms(
        patch, (-np.pi / 6, np.pi / 6), None, (0, 1, 2), False
    )
    out: dict[str, Any] = {}
    for name, fn in (
        ("monai", lambda i, x, y: monai(x, y, i)),
        ("batchgeneratorsv2", lambda i, x, y: bg(image=x, segmentation=y)),
    ):
        fn(0, images[0].clone(), labels[0].clone())  # warm-up
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(zip(images, labels)):
            fn(i, x.clone(), y.clone())
        out[name] = (time.perf_counter() - t0) / len(images)
    return out


CHILDREN = {
    "preprocess": _child_preprocess,
    "nasmed": _child_nasmed,
    "monai": _child_monai,
    "augment": _child_augment,
}


# --- parent -----------------------------------------------------------------------------------


def _watch(proc: psutil.Process, peaks: dict[str, float], stop: threading.Event) -> None:
    while not stop.is_set():
        rss = pss = 0
        try:
            procs = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                info = p.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        peaks["rss"] = max(peaks["rss"], rss / 2**20)
        peaks["pss"] = max(peaks["pss"], pss / 2**20)
        stop.wait(0.05)


def _run_child(kind: str, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE), "--child", kind, "--task", str(args.task)]
    cmd += ["--work", str(args.work), "--workers", str(args.workers), "--batch", str(args.batch)]
    cmd += ["--batches", str(args.batches), "--warmup", str(args.warmup)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peaks = {"rss": 0.0, "pss": 0.0}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(psutil.Process(proc.pid), peaks, stop))
    watcher.start()
    out, _ = proc.communicate()
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child {kind} failed with status {proc.returncode}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(peak_rss_mb=peaks["rss"], peak_pss_mb=peaks["pss"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small task, small patches")
    parser.add_argument(
        "--augment", action="store_true", help="MONAI vs batchgeneratorsv2 augmentation"
    )
    parser.add_argument("--cases", type=int, default=None, help="training cases (default 20)")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="case shape X Y Z")
    parser.add_argument("--patches", type=int, nargs="+", default=None, help="cubic patch sizes")
    parser.add_argument("--batches", type=int, default=None, help="timed batches per config")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None, help="keep the task and cache here")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--task", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--patch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0

    if args.augment:
        args.batches = args.batches or (10 if args.quick else 40)
        print("| augmentation per patch (1 thread) | patch | ms | x batchgeneratorsv2 |")
        print("|---|---|---|---|")
        for patch in args.patches or ([32, 64] if args.quick else [96, 128]):
            r = _run_child("augment", args, patch=patch)
            for name in ("monai", "batchgeneratorsv2"):
                ratio = r["batchgeneratorsv2"] / r[name]
                print(f"| {name} | {patch}^3 | {1000 * r[name]:.1f} | {ratio:.2f} |")
        return 0

    cases = args.cases or (6 if args.quick else 20)
    shape = tuple(args.shape or ((96, 96, 64) if args.quick else (160, 160, 128)))
    patches = args.patches or ([32, 48] if args.quick else [96, 128])
    args.batches = args.batches or (20 if args.quick else 100)
    root = args.data or Path(tempfile.mkdtemp(prefix="nasmed-bench-"))
    args.task = root / "task"
    args.work = root / "work"
    try:
        from decathlon.synthetic import write_synthetic_task

        if not (args.task / "dataset.json").exists():
            t0 = time.perf_counter()
            write_synthetic_task(args.task, cases=cases, shape=shape, test_cases=0, seed=0)
            print(f"synthetic task: {cases} cases of {shape} in {time.perf_counter() - t0:.0f} s")
        shutil.rmtree(args.work, ignore_errors=True)
        pre = _run_child("preprocess", args)
        rows = []
        for patch in patches:
            for kind in ("nasmed", "monai"):
                r = _run_child(kind, args, patch=patch)
                rows.append((kind, patch, r))
                print(
                    f"  {kind} {patch}^3: {args.batches * args.batch / r['seconds']:.1f} patches/s"
                )
    finally:
        if args.data is None:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(
        f"{cases} cases of {'x'.join(map(str, shape))}, batch {args.batch}, "
        f"{args.workers} workers, {args.batches} timed batches, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| loader | patch | patches/s | x MONAI | fg share | setup s/case "
        "| peak RSS MB | peak PSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    per_case_pre = pre["setup_s"] / cases
    for kind, patch, r in rows:
        speed = args.batches * args.batch / r["seconds"]
        monai = next(x for k, p, x in rows if k == "monai" and p == patch)
        ratio = speed / (args.batches * args.batch / monai["seconds"])
        setup = per_case_pre if kind == "nasmed" else r["setup_s"] / cases
        print(
            f"| {kind} | {patch}^3 | {speed:.1f} | {ratio:.2f} | {r['fg_share']:.2f} | "
            f"{setup:.2f} | {r['peak_rss_mb']:.0f} | {r['peak_pss_mb']:.0f} |"
        )
    print()
    rss, pss = pre["peak_rss_mb"], pre["peak_pss_mb"]
    print(f"nasmed preprocessing peak: RSS {rss:.0f} MB, PSS {pss:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
