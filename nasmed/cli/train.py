"""Verbs ``train``, ``predict``, ``evaluate``, ``transfer``: what a user does with an architecture.

Each verb calls one plain function (:func:`nasmed.training.train`, :func:`nasmed.infer.predict`,
:func:`nasmed.evaluate.evaluate`, :func:`nasmed.transfer.transfer`) and prints where its outputs
are. Bad input is one line on stderr and exit status 2, with nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from nasmed.cli.common import (
    add_amp,
    add_common,
    add_cpu_allocator,
    add_device,
    add_patch,
    add_precision,
    add_seed,
    add_task_verb,
    precision_options,
)
from nasmed.cli.pipeline_opts import add_pipeline_args, pipeline_config_from_args
from nasmed.errors import ConfigError
from nasmed.train.augment_config import AUGMENT_PARTS, AugmentConfig
from nasmed.train.config import TrainConfig

__all__ = ["register"]


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and logging.getLogger().isEnabledFor(logging.INFO)


def _fold(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fold must be an integer or all, not {text!r}") from None


_D = TrainConfig()  # the defaults, in one place


def _add_training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to write")
    p.add_argument("--epochs", type=int, default=_D.epochs, help=f"epochs (default {_D.epochs})")
    add_patch(p, "training patch and sliding window (default: the plan's, fitted to the network)")
    p.add_argument(
        "--fold",
        type=_fold,
        default=_D.fold,
        help="cross-validation fold (default 0), or all: train on every case (nnU-Net's "
        "convention, for tasks too small to hold any case out)",
    )
    p.add_argument("--folds", type=int, default=_D.folds, help="number of folds (default 5)")
    p.add_argument("--width", type=float, default=_D.width, help="channel multiplier (default 1)")
    ds = p.add_mutually_exclusive_group()
    ds.add_argument(
        "--deep-supervision",
        dest="deep_supervision",
        action="store_const",
        const=True,
        default=None,
        help="deep supervision (default: on for dynunet and genotypes, off for unet)",
    )
    ds.add_argument(
        "--no-deep-supervision", dest="deep_supervision", action="store_const", const=False
    )
    p.add_argument(
        "--optimizer", choices=("sgd", "adamw"), default=_D.optimizer, help="default sgd"
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate (sgd 1e-2, adamw 3e-4)")
    p.add_argument(
        "--weight-decay", type=float, default=None, help="weight decay (sgd 3e-5, adamw 1e-2)"
    )
    p.add_argument(
        "--momentum", type=float, default=_D.momentum, help=f"SGD momentum ({_D.momentum})"
    )
    p.add_argument(
        "--poly-exponent",
        type=float,
        default=_D.poly_exponent,
        help=f"poly decay exponent, 0 = constant (default {_D.poly_exponent})",
    )
    p.add_argument(
        "--grad-clip",
        type=float,
        default=_D.grad_clip,
        help=f"gradient norm clip, 0 = off (default {_D.grad_clip:g})",
    )
    add_precision(p, "on CUDA")
    p.add_argument("--batch", type=int, default=_D.batch_size, help="patches per step (default 2)")
    p.add_argument(
        "--steps", type=int, default=_D.steps_per_epoch, help="steps per epoch (default 250)"
    )
    p.add_argument(
        "--val-every", type=int, default=_D.val_every, help="validate every N epochs (default 1)"
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop (validated, checkpointed) before this many seconds of training",
    )
    p.add_argument(
        "--no-augment", action="store_true", help="no data augmentation (default: nnU-Net's)"
    )
    p.add_argument(
        "--augment-off",
        nargs="+",
        default=[],
        metavar="PART",
        choices=AUGMENT_PARTS,
        help=f"switch augmentation parts off: {', '.join(AUGMENT_PARTS)}",
    )
    p.add_argument(
        "--elastic",
        type=float,
        default=None,
        metavar="P",
        help="elastic deformation with probability P (default off, as nnU-Net v2)",
    )
    p.add_argument(
        "--no-postprocess",
        dest="postprocess",
        action="store_false",
        help="do not decide largest-component postprocessing on the validation cases",
    )
    p.add_argument(
        "--work-dir", default=None, help="preprocessing folder to (re)use (default RUN_DIR/work)"
    )
    p.add_argument(
        "--workers", type=int, default=_D.workers, help=f"loader processes (default {_D.workers})"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    add_seed(p)
    add_device(p)
    add_cpu_allocator(p, "cache")
    add_common(p)


def _augment(args: argparse.Namespace) -> AugmentConfig:
    if args.no_augment:
        return AugmentConfig.off()
    aug = AugmentConfig().without(*args.augment_off)
    if args.elastic is not None:
        aug = AugmentConfig(**{**aug.to_json(), "elastic": args.elastic})
    return aug


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs,
        patch=tuple(args.patch) if args.patch else None,
        fold=args.fold,
        folds=args.folds,
        width=args.width,
        deep_supervision=args.deep_supervision,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        poly_exponent=args.poly_exponent,
        grad_clip=args.grad_clip,
        **precision_options(args),  # type: ignore[arg-type]
        batch_size=args.batch,
        steps_per_epoch=args.steps,
        val_every=args.val_every,
        seed=args.seed,
        workers=args.workers,
        augment=_augment(args),
        time_budget=args.time_budget,
        postprocess=args.postprocess,
    )


def _runtime(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "resume": args.resume,
        "device": args.device,
        "work_dir": args.work_dir,
        "progress": _progress(args),
    }


def register(sub: Any) -> None:
    """Add ``train``, ``predict``, ``evaluate`` and ``transfer``."""
    p = sub.add_parser(
        "train",
        help="train a genotype (or unet / dynunet) on a task",
        description="Preprocess TASK_DIR, train the architecture on one fold with Dice + CE "
        "(SGD + poly decay or AdamW, AMP on CUDA), validate with sliding-window Dice, and write "
        "RUN_DIR/model.pt (state dict), model.json, plan.json, history.csv, checkpoints/.",
    )
    p.add_argument("task_dir", metavar="TASK_DIR", help="MSD or nnU-Net raw task folder")
    p.add_argument(
        "--arch",
        required=True,
        help="genotype.json (or its folder), unet, dynunet, or nnunet:PLANS.json:CONFIG "
        "(nnU-Net v2's network of that plans configuration)",
    )
    _add_training(p)
    add_pipeline_args(p)
    add_task_verb(p, _train)

    p = sub.add_parser(
        "predict",
        help="segment images with a trained run folder",
        description="Preprocess each input like the training data, run sliding-window inference "
        "(Gaussian blending, optional mirror TTA), map the result back onto the input's exact "
        "grid and write OUT/<case>.nii.gz with the input's affine. Inputs: image files or "
        "folders, MSD (3D/4D) or nnU-Net per-channel (<case>_0000.nii.gz ...).",
    )
    p.add_argument("--model", required=True, metavar="RUN_DIR", help="a finished train run")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--tta", action="store_true", help="mirror test-time augmentation (8 flips)")
    p.add_argument("--overlap", type=float, default=0.5, help="window overlap (default 0.5)")
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="run the network in torch, or the exported RUN_DIR/model.onnx in onnxruntime (CPU; "
        "`nasmed export onnx RUN_DIR` first); default torch",
    )
    p.add_argument(
        "--onnx", default=None, metavar="FILE", help="ONNX file (default RUN_DIR/model.onnx)"
    )
    add_amp(p, "on with CUDA; on a CPU with native bfloat16, --amp is about 2.5x faster")
    add_device(p)
    add_common(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "evaluate",
        help="Dice, HD95 and surface Dice of predictions against references",
        description="Pair PRED and REF label maps by case name; per case and class Dice, 95%% "
        "Hausdorff distance (mm) and normalised surface Dice (tolerance in mm) with MONAI; "
        "writes metrics.json and metrics.csv and prints a summary. Both masks empty: Dice 1, "
        "NSD 1, HD95 0; one empty: Dice 0, NSD 0, HD95 undefined (n/a).",
    )
    p.add_argument("--pred", required=True, metavar="DIR", help="predicted label maps")
    p.add_argument("--ref", required=True, metavar="DIR", help="reference label maps")
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="metrics.json path (metrics.csv beside it) or a folder (default PRED/metrics.json)",
    )
    p.add_argument(
        "--labels", type=int, nargs="+", default=None, help="labels to score (default: all present)"
    )
    p.add_argument(
        "--nsd-tolerance",
        nargs="+",
        default=["1.0"],
        metavar="MM|LABEL=MM",
        help="NSD tolerance in mm, for all classes or per class (1=2.0 2=1.0); default 1",
    )
    add_common(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "transfer",
        help="fine-tune an architecture (and its weights) on another task",
        description="Rebuild the architecture for TARGET_TASK_DIR's channels and classes, load "
        "every tensor of --weights whose name and shape match, adapt the kernels that read the "
        "image to another number of modalities (source kernel repeated over the channels and "
        "scaled), re-initialise the rest (the head; RUN_DIR/transfer.json lists every tensor), "
        "optionally freeze the encoder for the first epochs, and fine-tune like `nasmed train`.",
    )
    p.add_argument("task_dir", metavar="TARGET_TASK_DIR", help="the target task folder")
    p.add_argument("--arch", required=True, help="genotype.json (or unet / dynunet)")
    p.add_argument("--weights", default=None, metavar="MODEL_PT", help="model.pt or a run folder")
    p.add_argument(
        "--freeze-encoder-epochs",
        type=int,
        default=0,
        help="keep the transferred encoder fixed for this many epochs (default 0)",
    )
    p.add_argument(
        "--no-adapt-inputs",
        dest="adapt_inputs",
        action="store_false",
        help="re-initialise the kernels that read the image when the number of modalities "
        "differs, instead of adapting the source's",
    )
    _add_training(p)
    add_task_verb(p, _transfer)


def _summary(run: Path) -> str:
    info = json.loads((run / "model.json").read_text(encoding="utf-8")).get("info", {})
    best = info.get("best_val_dice")
    stopped = " (stopped by the time budget)" if info.get("stopped_by_time_budget") else ""
    best_s = f"{best:.4f} (epoch {info.get('best_epoch', 0) + 1})" if best is not None else "n/a"
    return (
        f"trained {info.get('epochs')} epochs, {info.get('params', 0):,} parameters, "
        f"best validation Dice {best_s}{stopped}\n"
        f"model:   {run / 'model.pt'} + {run / 'model.json'}\n"
        f"history: {run / 'history.csv'} (TensorBoard: {run / 'tensorboard'})"
    )


def _train(args: argparse.Namespace) -> int:
    from nasmed.training import train

    pipeline = pipeline_config_from_args(args)
    run = train(
        args.task_dir, args.arch, args.out, _train_config(args), pipeline=pipeline, **_runtime(args)
    )
    print(_summary(run))
    return 0


def _transfer(args: argparse.Namespace) -> int:
    from nasmed.transfer import TransferConfig, transfer

    config = TransferConfig(
        weights=args.weights,
        freeze_encoder_epochs=args.freeze_encoder_epochs,
        adapt_inputs=args.adapt_inputs,
        train=_train_config(args),
    )
    run = transfer(args.arch, args.task_dir, args.out, config, **_runtime(args))
    report = json.loads((run / "transfer.json").read_text(encoding="utf-8"))
    if report.get("weights"):
        print(
            f"transferred {len(report['transferred'])} tensors from {report['weights']}, "
            f"adapted {len(report['adapted'])} to the input channels; "
            f"re-initialised {len(report['initialised'])} "
            f"({len(report['skipped_shape'])} of other shape); list: {run / 'transfer.json'}"
        )
    print(_summary(run))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from nasmed.export.runtime import load_backend
    from nasmed.infer import predict

    network = load_backend(args.model, args.backend, onnx_file=args.onnx)
    paths = predict(
        args.model,
        args.inputs,
        args.out,
        tta_mirror=args.tta,
        device=args.device,
        overlap=args.overlap,
        progress=_progress(args),
        network=network,
        amp=args.amp,
        amp_dtype=args.amp_dtype,
    )
    print(f"wrote {len(paths)} segmentation(s) to {args.out}")
    return 0


def _tolerance(values: list[str]) -> float | dict[str, float]:
    try:
        if len(values) == 1 and "=" not in values[0]:
            return float(values[0])
        out: dict[str, float] = {}
        for item in values:
            key, _, mm = item.partition("=")
            if not key or not mm:
                raise ValueError(item)
            out[key] = float(mm)
        return out
    except ValueError:
        raise ConfigError(
            f"--nsd-tolerance {' '.join(values)}: give one number of mm or LABEL=MM pairs"
        ) from None


def _evaluate(args: argparse.Namespace) -> int:
    from nasmed.evaluate import evaluate, format_summary

    out = Path(args.out) if args.out else Path(args.pred) / "metrics.json"
    metrics = evaluate(
        args.pred,
        args.ref,
        labels=args.labels,
        nsd_tolerance_mm=_tolerance(args.nsd_tolerance),
        out=out,
    )
    print(format_summary(metrics))
    json_path = out if out.suffix == ".json" else out / "metrics.json"
    print(f"metrics: {json_path} and {json_path.with_suffix('.csv')}")
    return 0
