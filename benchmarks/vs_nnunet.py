"""nasmed against nnU-Net v2 itself, on one synthetic task, one fold, the same CPU.

What it measures (every step a real CLI or API run, in its own subprocess):

- preprocessing seconds per case: ``nnUNetv2_plan_and_preprocess -c 3d_fullres`` (after
  ``nnUNetv2_convert_MSD_dataset``, not timed) against ``nasmed preprocess``;
- accuracy at equal wall-clock: each trainer gets the same ``--budget`` seconds of training on
  fold 0 of nasmed's splits (written to nnU-Net's ``splits_final.json``, so both train and
  validate on the same cases), for every seed:
  nnU-Net v2 ``3d_fullres`` with ``nnUNetTrainerTimed``, a subclass of ``nnUNetTrainer`` defined
  here (``--steps`` iterations, 50 by default, and a fifth of that of validation per epoch,
  stopped before the budget, its
  poly learning rate following the larger of the epoch and time fractions, as nasmed's
  ``--time-budget`` does; the class is registered under the name ``nnUNetTrainer`` so that the
  stock ``nnUNetv2_predict`` loads it) against ``nasmed train --arch dynunet`` and
  ``nasmed train --arch GENOTYPE`` with ``--time-budget`` (nnU-Net's recipe: augmentation, deep
  supervision, SGD + poly; the same ``--steps`` per epoch). Both check the time between epochs,
  so an epoch must be short against the budget. The genotype is ``--genotype`` or, without it,
  the result of a ``nasmed search`` of ``--search-budget`` seconds on the same task;
- prediction seconds per case on the validation cases with mirroring on both (nnU-Net's
  ``nnUNetPredictor``, what ``nnUNetv2_predict`` runs, mirroring on, with ``--threads`` torch
  threads, since the console script takes every core on CPU; against ``nasmed predict
  --tta``); these predictions, in the images' own geometry, are scored with
  :func:`nasmed.evaluate.evaluate` (Dice per class);
- the augmented loader's supply (patches/s, nasmed's loader with nnU-Net's augmentation,
  ``--workers`` processes) against the training step's demand (patches/s of forward + backward
  of ``dynunet`` at the plan's patch, batch 2).

``--nasmed-amp`` gives nasmed's search, training and prediction ``--amp`` (bfloat16 autocast on
CPU; nnU-Net v2 autocasts on CUDA only, so it runs float32 here); the dynunet runs are then also
predicted with ``--no-amp``, a row of their own, so both prediction ratios are printed.

Every run gets ``--threads`` torch threads (1 by default) and ``--workers`` augmentation or
preprocessing processes (1), the same for nnU-Net and nasmed; the 1-minute load average before
and after each step is printed with the table (the machine may be shared). After each seed the
raw numbers go to ``DATA/results.json``.

Prints one markdown table with the targets of issue 13. nnU-Net's multi-process augmentation is
not seeded exactly, so its seeds only seed torch and numpy. Seeds and budgets are small in
``--quick``; only ratios measured in one run on an idle machine mean anything.

Usage::

    python benchmarks/vs_nnunet.py --quick          # 20 cases of 40x40x32, 40 s budgets, 2 seeds
    python benchmarks/vs_nnunet.py --budget 1800    # 24 cases of 96x96x64, 30 min budgets
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
BIN = Path(sys.executable).parent
DATASET_ID = 501
TASK_NAME = "Task501_NasmedSynth"  # nnUNetv2_convert_MSD_dataset wants TaskNNN_Name


LOADS: list[tuple[str, float, float]] = []  # (step, 1-min load before, after)


def _load() -> float:
    """The 1-minute load average (what ``uptime`` prints first)."""
    return os.getloadavg()[0]


def _run(cmd: list[str], env: dict[str, str] | None = None, quiet: bool = True) -> float:
    """Run ``cmd``; returns its wall-clock seconds (raises on failure, showing its output)."""
    before = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, env={**os.environ, **(env or {})}, capture_output=quiet, text=True, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stdout or "")[-2000:] + (proc.stderr or "")[-2000:]
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    seconds = time.perf_counter() - t0
    step = " ".join(Path(c).name for c in cmd[:4] if not c.startswith("-"))
    if "--arch" in cmd:
        step += f" {Path(cmd[cmd.index('--arch') + 1]).stem} seed {cmd[cmd.index('--seed') + 1]}"
    LOADS.append((step, before, _load()))
    print(f"  {seconds:7.1f} s  load {before:.2f} -> {_load():.2f}  {step}", flush=True)
    return seconds


# --- children (run in their own process) ------------------------------------------------------


def _child_nnunet_train(args: argparse.Namespace) -> dict[str, Any]:
    """Train nnU-Net's 3d_fullres on fold 0 for ``args.budget`` seconds."""
    import numpy as np
    import torch
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    budget = float(args.budget)
    ITERATIONS = args.steps
    CUDA = torch.device("cuda")  # nnU-Net's default device argument

    class nnUNetTrainerTimed(nnUNetTrainer):
        """``--steps`` (+ a fifth as validation) iterations per epoch; stops before ``budget``
        s; time-aware poly rate."""

        def __init__(  # nnU-Net records its __init__ arguments by name: the same signature
            self,
            plans: dict,
            configuration: str,
            fold: int,
            dataset_json: dict,
            device: torch.device = CUDA,
        ) -> None:
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_iterations_per_epoch = ITERATIONS
            self.num_val_iterations_per_epoch = max(1, ITERATIONS // 5)
            self.num_epochs = 1000
            self.started = 0.0

        def on_train_epoch_start(self) -> None:
            super().on_train_epoch_start()
            done = max(self.current_epoch / self.num_epochs, self._elapsed() / budget)
            for group in self.optimizer.param_groups:
                group["lr"] = self.initial_lr * max(0.0, 1 - min(done, 1.0)) ** 0.9

        def _elapsed(self) -> float:
            return time.perf_counter() - self.started

        def run_training(self) -> None:
            self.on_train_start()
            self.started = time.perf_counter()
            for epoch in range(self.current_epoch, self.num_epochs):
                spent = self._elapsed()
                if epoch > 0 and spent + spent / epoch > budget:
                    break
                self.on_epoch_start()
                self.on_train_epoch_start()
                outs = [
                    self.train_step(next(self.dataloader_train))
                    for _ in range(self.num_iterations_per_epoch)
                ]
                self.on_train_epoch_end(outs)
                with torch.no_grad():
                    self.on_validation_epoch_start()
                    val = [
                        self.validation_step(next(self.dataloader_val))
                        for _ in range(self.num_val_iterations_per_epoch)
                    ]
                    self.on_validation_epoch_end(val)
                self.on_epoch_end()
            self.on_train_end()

    nnUNetTrainerTimed.__name__ = "nnUNetTrainer"  # checkpoints name a class nnUNetv2_predict finds
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(max(1, args.threads))
    base = join(nnUNet_preprocessed, maybe_convert_to_dataset_name(DATASET_ID))
    plans = load_json(join(base, "nnUNetPlans.json"))
    plans["continue_training"] = False  # what nnUNetv2_train sets (nnunetv2 2.8)
    trainer = nnUNetTrainerTimed(
        plans=plans,
        configuration="3d_fullres",
        fold=0,
        dataset_json=load_json(join(base, "dataset.json")),
        device=torch.device("cpu"),
    )
    t0 = time.perf_counter()
    trainer.run_training()
    config = trainer.configuration_manager
    return {
        "train_s": time.perf_counter() - t0,
        "epochs": trainer.current_epoch,
        "patch": list(config.patch_size),
        "features": list(config.network_arch_init_kwargs.get("features_per_stage", [])),
    }


def _child_supply_demand(args: argparse.Namespace) -> dict[str, Any]:
    """Augmented loader patches/s (``--workers``) and the dynunet training step's patches/s."""
    import torch

    from decathlon.plan import Plan
    from decathlon.sampling import make_loader
    from decathlon.splits import load_splits
    from nasmed.models.factory import build_model
    from nasmed.train.augment import AugmentConfig, Augmenter
    from nasmed.train.losses import DeepSupervisionLoss, make_seg_loss
    from nasmed.training import default_patch

    work = Path(args.work)
    plan = Plan.from_json(json.loads((work / "plan.json").read_text()))
    patch = default_patch(plan, "dynunet")
    cases = list(load_splits(work / "splits.json")[0].train)
    batches = 12 if args.quick else 50
    loader = make_loader(
        work / "cache",
        cases,
        patch,
        batch_size=2,
        workers=max(1, args.workers),
        samples_per_epoch=2 * (batches + 2),
        transform=Augmenter(AugmentConfig()),
    )
    it = iter(loader)
    next(it), next(it)  # workers started
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    supply = 2 * batches / (time.perf_counter() - t0)
    torch.set_num_threads(max(1, args.threads))
    net = build_model(
        "dynunet", plan.num_channels, plan.num_classes, deep_supervision=True, patch=patch
    )
    loss_fn = DeepSupervisionLoss(make_seg_loss())
    opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    x = torch.randn(2, plan.num_channels, *patch)
    y = torch.randint(0, plan.num_classes, (2, 1, *patch))
    steps, seconds = 0, 0.0
    while steps < 3 or seconds < 5:
        t = time.perf_counter()
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
        seconds += time.perf_counter() - t if steps else 0.0  # the first step warms up
        steps += 1
    demand = 2 * (steps - 1) / seconds
    return {"supply": supply, "demand": demand, "patch": list(patch)}


def _child_nnunet_predict(args: argparse.Namespace) -> dict[str, Any]:
    """What ``nnUNetv2_predict -f 0 -chk checkpoint_final.pth -device cpu`` runs (mirroring on,
    step 0.5, Gaussian blending), with ``--threads`` torch threads: the console script sets
    ``torch.set_num_threads(cpu_count)`` on CPU, which would give nnU-Net more threads."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.paths import nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    torch.set_num_threads(max(1, args.threads))
    model = Path(nnUNet_results) / maybe_convert_to_dataset_name(DATASET_ID)
    model = model / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=True,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(str(model), (0,), "checkpoint_final.pth")
    t0 = time.perf_counter()
    predictor.predict_from_files(
        str(args.input),
        str(args.output),
        save_probabilities=False,
        overwrite=True,
        num_processes_preprocessing=1,
        num_processes_segmentation_export=1,
    )
    return {"predict_s": time.perf_counter() - t0}


CHILDREN = {
    "nnunet_train": _child_nnunet_train,
    "nnunet_predict": _child_nnunet_predict,
    "supply_demand": _child_supply_demand,
}


def _child(kind: str, args: argparse.Namespace, env: dict[str, str], **extra: Any) -> Any:
    cmd = [sys.executable, str(HERE), "--child", kind, "--work", str(args.work)]
    cmd += ["--threads", str(args.threads), "--steps", str(args.steps)]
    cmd += ["--workers", str(args.workers)]
    cmd += ["--quick"] if args.quick else []
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    before = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {kind} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t0
    step = f"{kind} seed {extra['seed']}" if "seed" in extra else kind
    LOADS.append((step, before, _load()))
    print(f"  {out['wall_s']:7.1f} s  load {before:.2f} -> {_load():.2f}  {step}", flush=True)
    return out


# --- parent -----------------------------------------------------------------------------------


def _dice(pred: Path, ref: Path, labels: list[int]) -> dict[int, float]:
    from nasmed.evaluate import evaluate

    summary = evaluate(pred, ref, labels=labels)["summary"]
    return {k: float(summary[str(k)]["dice_mean"]) for k in labels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small task, short budgets")
    parser.add_argument("--cases", type=int, default=None, help="training cases (>= 20)")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="case shape X Y Z")
    parser.add_argument("--budget", type=float, default=None, help="training seconds per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--genotype", type=Path, default=None, help="a found genotype.json")
    parser.add_argument("--search-budget", type=float, default=None, help="search seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1)")
    parser.add_argument(
        "--workers", type=int, default=1, help="augmentation/preprocessing processes, both (1)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="iterations per epoch, both (50; quick 10)"
    )
    parser.add_argument("--data", type=Path, default=None, help="keep everything here")
    parser.add_argument(
        "--nasmed-amp",
        action="store_true",
        help="nasmed search/train/predict with --amp (bfloat16 on CPU); nnU-Net stays float32",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.budget is None:
            args.budget = 0.0
        print(json.dumps(CHILDREN[args.child](args)))
        return 0

    args.steps = args.steps or (10 if args.quick else 50)
    cases = args.cases or (20 if args.quick else 24)
    if cases < 20:
        parser.error("--cases must be >= 20")
    shape = tuple(args.shape or ((40, 40, 32) if args.quick else (96, 96, 64)))
    budget = args.budget or (40.0 if args.quick else 1800.0)
    search_budget = args.search_budget or (40.0 if args.quick else 3600.0)
    root = args.data or Path(tempfile.mkdtemp(prefix="nasmed-vs-nnunet-"))
    env = {
        "nnUNet_raw": str(root / "nnUNet_raw"),
        "nnUNet_preprocessed": str(root / "nnUNet_preprocessed"),
        "nnUNet_results": str(root / "nnUNet_results"),
        "nnUNet_n_proc_DA": str(args.workers),
        "nnUNet_compile": "f",
        "OMP_NUM_THREADS": str(args.threads),
    }
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    nasmed = [sys.executable, "-m", "nasmed"]
    amp = ["--amp"] if args.nasmed_amp else []
    rows: dict[str, Any] = {}
    try:
        from decathlon.datalist import load_task
        from decathlon.splits import load_splits

        task = root / TASK_NAME
        if not (task / "dataset.json").is_file():
            synth = [*nasmed, "synth", str(task), "--cases", str(cases), "--test-cases", "0"]
            _run([*synth, "--shape", *map(str, shape), "--classes", "2", "--seed", "0", "-q"])
        (task / "imagesTs").mkdir(exist_ok=True)
        labels = sorted(k for k in load_task(task).labels if k > 0)

        # preprocessing
        work = root / "nasmed_work"
        args.work = work
        shutil.rmtree(work, ignore_errors=True)
        pre_nasmed = _run(
            [*nasmed, "preprocess", str(task), "--out", str(work), "--workers", str(args.workers)],
            env,
        )
        dataset = f"Dataset{DATASET_ID:03d}_NasmedSynth"
        if not (Path(env["nnUNet_raw"]) / dataset).is_dir():
            convert = [str(BIN / "nnUNetv2_convert_MSD_dataset"), "-i", str(task)]
            _run([*convert, "-np", str(args.workers)], env)
        shutil.rmtree(Path(env["nnUNet_preprocessed"]) / dataset, ignore_errors=True)
        pre_nnunet = _run(
            [
                str(BIN / "nnUNetv2_plan_and_preprocess"),
                "-d",
                str(DATASET_ID),
                "-c",
                "3d_fullres",
                "-np",
                str(args.workers),
                "-npfp",
                str(args.workers),
            ],
            env,
        )
        rows["preprocess"] = (pre_nnunet / cases, pre_nasmed / cases)
        print(
            f"preprocess s/case: nnU-Net {pre_nnunet / cases:.2f}, nasmed {pre_nasmed / cases:.2f}"
        )

        # the same fold for both
        fold = load_splits(work / "splits.json")[0]
        pre_dir = Path(env["nnUNet_preprocessed"]) / dataset
        (pre_dir / "splits_final.json").write_text(json.dumps([fold.to_json()]))
        val_in, ref = root / "val_images", root / "val_labels"
        for d in (val_in, ref):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
        for name in fold.val:
            shutil.copy(task / "imagesTr" / f"{name}.nii.gz", val_in / f"{name}_0000.nii.gz")
            shutil.copy(task / "labelsTr" / f"{name}.nii.gz", ref / f"{name}.nii.gz")
        n_val = len(fold.val)

        genotype = args.genotype
        if genotype is None:
            search = root / "search"
            if not (search / "genotype.json").is_file():
                shutil.rmtree(search, ignore_errors=True)
                _run(
                    [
                        *nasmed,
                        "search",
                        str(task),
                        "--out",
                        str(search),
                        "--space",
                        "scnas-small",
                        "--epochs",
                        "1000",
                        "--warmup",
                        "1",
                        "--steps",
                        str(args.steps),
                        "-q",
                        "--time-budget",
                        str(search_budget),
                        "--threads",
                        str(args.threads),
                        "--seed",
                        "0",
                        "--work-dir",
                        str(work),
                        *amp,
                    ],
                    env,
                )
            genotype = search / "genotype.json"

        results: dict[str, list[dict[int, float]]] = {}
        predict_s: dict[str, list[float]] = {}
        info: dict[str, list[dict[str, Any]]] = {}
        for seed in args.seeds:
            # nnU-Net v2
            results_dir = Path(env["nnUNet_results"]) / dataset
            shutil.rmtree(results_dir, ignore_errors=True)
            r = _child("nnunet_train", args, env, budget=budget, seed=seed)
            info.setdefault("nnU-Net v2 3d_fullres", []).append(r)
            out = root / f"pred_nnunet_s{seed}"
            shutil.rmtree(out, ignore_errors=True)
            secs = _child("nnunet_predict", args, env, input=val_in, output=out)["wall_s"]
            predict_s.setdefault("nnU-Net v2 3d_fullres", []).append(secs / n_val)
            results.setdefault("nnU-Net v2 3d_fullres", []).append(_dice(out, ref, labels))
            # nasmed
            for label, arch in (("nasmed dynunet", "dynunet"), ("nasmed genotype", genotype)):
                run = root / f"run_{'dynunet' if arch == 'dynunet' else 'genotype'}_s{seed}"
                shutil.rmtree(run, ignore_errors=True)
                _run(
                    [
                        *nasmed,
                        "train",
                        str(task),
                        "--arch",
                        str(arch),
                        "--out",
                        str(run),
                        "--epochs",
                        "1000",
                        "--steps",
                        str(args.steps),
                        "--val-every",
                        "1000000",
                        "--time-budget",
                        str(budget),
                        "--seed",
                        str(seed),
                        "--fold",
                        "0",
                        "--work-dir",
                        str(work),
                        "--workers",
                        str(args.workers),
                        "-q",
                        *amp,
                    ],
                    env,
                )
                info.setdefault(label, []).append(
                    json.loads((run / "model.json").read_text())["info"]
                )
                ways = [(label, amp)]
                if amp and arch == "dynunet":
                    ways.append(("nasmed dynunet, float32 prediction", ["--no-amp"]))
                for name, flag in ways:
                    out = root / f"pred_{run.name}{'_fp32' if flag == ['--no-amp'] else ''}"
                    shutil.rmtree(out, ignore_errors=True)
                    secs = _run(
                        [
                            *nasmed,
                            "predict",
                            "--model",
                            str(run),
                            str(val_in),
                            "--out",
                            str(out),
                            "--tta",
                            "-q",
                            *flag,
                        ],
                        env,
                    )
                    predict_s.setdefault(name, []).append(secs / n_val)
                    results.setdefault(name, []).append(_dice(out, ref, labels))
            print(f"seed {seed}: {json.dumps({k: v[-1] for k, v in results.items()})}", flush=True)
            record = {"results": results, "predict_s": predict_s, "info": info, "loads": LOADS}
            (root / "results.json").write_text(json.dumps(record, default=str))
        sd = _child("supply_demand", args, env)
    finally:
        if args.data is None:
            shutil.rmtree(root, ignore_errors=True)

    def mean_dice(name: str, k: int | None = None) -> float:
        per_seed = [statistics.mean(d.values()) if k is None else d[k] for d in results[name]]
        return 100 * statistics.mean(per_seed)

    ref_name = "nnU-Net v2 3d_fullres"
    print()
    print(
        f"{cases} cases of {'x'.join(map(str, shape))}, fold 0 ({n_val} validation cases), "
        f"training budget {budget:g} s, seeds {args.seeds}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print()
    head = " | ".join(f"Dice {k}" for k in labels)
    print(f"| | {head} | mean Dice | vs nnU-Net | epochs | predict s/case (TTA) | target |")
    print("|---|" + "---|" * (len(labels) + 5))
    targets = {
        ref_name: "reference",
        "nasmed dynunet": "within 1 Dice point",
        "nasmed genotype": "at or above",
        "nasmed dynunet, float32 prediction": "(the dynunet runs, predicted without --amp)",
    }
    for name in results:
        per = " | ".join(f"{mean_dice(name, k):.1f}" for k in labels)
        delta = mean_dice(name) - mean_dice(ref_name)
        runs = info.get(name) or info["nasmed dynunet"]  # the float32 row: the dynunet runs
        epochs = " / ".join(str(i.get("epochs", "?")) for i in runs)
        pred = statistics.mean(predict_s[name])
        speed = statistics.mean(predict_s[ref_name]) / pred
        print(
            f"| {name} | {per} | {mean_dice(name):.1f} | {delta:+.1f} | {epochs} | "
            f"{pred:.2f} ({speed:.1f}x) | {targets[name]} |"
        )
    pre_nn, pre_na = rows["preprocess"]
    print()
    print("| measure | nnU-Net v2 | nasmed | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| preprocessing s/case | {pre_nn:.2f} | {pre_na:.2f} | {pre_nn / pre_na:.1f}x | >= 5x |"
    )
    pred_ratio = statistics.mean(predict_s[ref_name]) / statistics.mean(predict_s["nasmed dynunet"])
    print(f"| prediction (TTA), dynunet | | | {pred_ratio:.1f}x | >= 2x |")
    fp32_name = "nasmed dynunet, float32 prediction"
    if fp32_name in predict_s:
        fp32_ratio = statistics.mean(predict_s[ref_name]) / statistics.mean(predict_s[fp32_name])
        print(f"| prediction (TTA), dynunet, float32 | | | {fp32_ratio:.1f}x | (--no-amp) |")
    print(
        f"| augmented loader vs step (patch {sd['patch']}) | | "
        f"{sd['supply']:.1f} vs {sd['demand']:.1f} patches/s | "
        f"{sd['supply'] / sd['demand']:.1f}x | >= 1x (never the bottleneck) |"
    )
    print()
    nn = info[ref_name][-1]
    print(f"nnU-Net plan: patch {nn['patch']}, features {nn['features']}")
    print()
    print("| step | load before | load after |")
    print("|---|---|---|")
    for step, before, after in LOADS:
        print(f"| {step} | {before:.2f} | {after:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
