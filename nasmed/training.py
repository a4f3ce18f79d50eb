"""``train(task_dir, arch, run_dir, TrainConfig)``: the API of ``nasmed train`` and ``transfer``.

It sits above :mod:`nasmed.train` (the fit loop) and :mod:`nasmed.pipeline` (the data-parallel
and pipelined trainers), which is why it is not inside ``nasmed.train``.

Checks every input (task, architecture, patch, settings, run folder) before writing anything,
preprocesses the task (``RUN_DIR/work`` unless ``work_dir`` is given; unchanged cases are reused),
trains fold ``fold`` of its splits with :class:`~nasmed.train.trainer.Trainer`, validating with
sliding-window Dice on the fold's validation cases, and writes::

    RUN_DIR/run.json          the run's kind and settings (resume refuses changed settings)
    RUN_DIR/plan.json         the task's plan (copied at the start)
    RUN_DIR/history.csv       one row per epoch (+ tensorboard/)
    RUN_DIR/checkpoints/      last.pt (resume point, every epoch), best.pt (best validation Dice)
    RUN_DIR/model.pt          final weights: a state dict, torch.load(weights_only=True)
    RUN_DIR/postprocessing.json  largest-component postprocessing (decided on validation)
    RUN_DIR/model.json        how to rebuild the network, its preprocessing, its recipe (last)

A killed run leaves no ``model.pt``/``model.json``; ``resume=True`` continues it from
``checkpoints/last.pt``. A user error found before training (bad task, genotype, patch, a folder
that holds another run) leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from decathlon.datalist import load_task
from decathlon.fsutil import atomic_open
from decathlon.plan import Plan
from decathlon.splits import ALL_FOLD
from nasmed.distributed import barrier, init_distributed, is_main
from nasmed.errors import ConfigError
from nasmed.genotype import Genotype, check_space, genotype_space
from nasmed.memory import check_network
from nasmed.models.factory import build_model, check_patch, load_arch, patch_divisor
from nasmed.models.spec import MODEL_FILE, WEIGHTS_FILE, ModelSpec
from nasmed.pipeline.gpipe import PipelineConfig
from nasmed.pipeline.trainers import make_trainer
from nasmed.postprocess_decide import decide_postprocessing
from nasmed.rundir import prepare_work
from nasmed.runfolder import RunFolder
from nasmed.runtime import resolve_device, seed_everything
from nasmed.train.config import TrainConfig, foreground_fraction, nnunet_batch_dice
from nasmed.train.trainer import LAST

__all__ = ["default_patch", "dice_score", "run_training", "train"]

log = logging.getLogger(__name__)

#: Called with the freshly built network; returns the names of the parameters to freeze.
PrepareFn = Callable[[nn.Module, Path], list[str]]


def default_patch(plan: Plan, arch: str | Genotype) -> tuple[int, int, int]:
    """The plan's patch, each side rounded down to the architecture's divisor (at least one)."""
    d = patch_divisor(arch)
    p = [max(d, (s // d) * d) for s in plan.patch_size]
    return (p[0], p[1], p[2])


def dice_score(result: dict[str, Any]) -> dict[str, float]:
    """Normalise a validation result to ``{"dice": mean, "dice_<class>": ...}``."""
    out: dict[str, float] = {}
    mean = None
    for key in ("dice", "mean", "mean_dice", "dice_mean"):
        if isinstance(result.get(key), (int, float)):
            mean = float(result[key])
            break
    for key, value in result.items():
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, (int, float)):
                    out[f"dice_{k}"] = float(v)
        elif isinstance(value, (int, float)) and key not in (
            "dice",
            "mean",
            "mean_dice",
            "dice_mean",
        ):
            out[key if key.startswith("dice") else f"dice_{key}"] = float(value)
    if mean is None:
        per = [v for v in out.values() if math.isfinite(v)]
        mean = sum(per) / len(per) if per else math.nan
    return {"dice": mean, **out}


def _make_validate(
    cache_dir: Path,
    cases: list[str],
    patch: tuple[int, int, int],
    device: torch.device,
    num_classes: int,
) -> Callable[[nn.Module], dict[str, float]]:
    from nasmed.train.validation import validate_dice

    def validate(net: nn.Module) -> dict[str, float]:
        return dice_score(
            validate_dice(net, cache_dir, cases, patch, device=device, num_classes=num_classes)
        )

    return validate


def _check_arch(arch: str | os.PathLike[str] | Genotype) -> str | Genotype:
    resolved = load_arch(arch)
    if isinstance(resolved, Genotype):
        check_space(resolved, genotype_space(resolved))
        try:  # model.json embeds the genotype: refuse now what could not be written at the end
            json.dumps(resolved.to_dict(), allow_nan=False)
        except ValueError as exc:
            where = "the genotype" if isinstance(arch, Genotype) else str(arch)
            raise ConfigError(
                f"{where}: holds a NaN or infinite value, which model.json cannot record ({exc})"
            ) from None
    return resolved


def train(
    task_dir: str | os.PathLike[str],
    arch: str | os.PathLike[str] | Genotype,
    run_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    device: str = "auto",
    work_dir: str | os.PathLike[str] | None = None,
    pipeline: PipelineConfig | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> Path:
    """Train ``arch`` on ``task_dir`` into ``run_dir`` (see the module docstring for the files).

    Args:
        task_dir: an MSD or nnU-Net raw task folder.
        arch: ``"unet"``, ``"dynunet"``, a ``genotype.json`` (or a folder holding one).
        run_dir: the run folder (new, empty, or this run's with ``resume``).
        config: the settings (default ``TrainConfig()``: the nnU-Net recipe, 50 epochs).
        resume: continue the run in ``run_dir`` from its last checkpoint.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        work_dir: preprocessing folder to use (and reuse) instead of ``RUN_DIR/work``.
        pipeline: train the network as a torchgpipe pipeline over these devices (docs/scale.md);
            ``device`` is then the pipeline's last device. Under ``torchrun`` the run is
            data-parallel instead (see :mod:`nasmed.pipeline.ddp`).
        progress: progress bars.
        on_epoch_end: test seam, see :class:`~nasmed.train.trainer.Trainer`.

    Returns:
        ``run_dir``.

    Raises:
        DatasetError: invalid task. GenotypeError / SpaceError: bad genotype. ConfigError: bad
        setting or patch. RunDirError: the folder holds another run, or resume settings differ.
    """
    return run_training(
        "train",
        task_dir,
        arch,
        run_dir,
        config or TrainConfig(),
        resume=resume,
        device=device,
        work_dir=work_dir,
        pipeline=pipeline,
        progress=progress,
        on_epoch_end=on_epoch_end,
    )


def run_training(
    kind: str,
    task_dir: str | os.PathLike[str],
    arch: str | os.PathLike[str] | Genotype,
    run_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    resume: bool = False,
    device: str = "auto",
    work_dir: str | os.PathLike[str] | None = None,
    pipeline: PipelineConfig | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    prepare: PrepareFn | None = None,
    extra_settings: dict[str, Any] | None = None,
) -> Path:
    """:func:`train` for another kind of run (``"transfer"``): ``prepare`` gets the fresh
    network (to load weights into it) and returns the parameters to freeze for
    ``config.freeze_epochs``; ``extra_settings`` join ``run.json``'s immutable settings."""
    dev = resolve_device(device)
    if pipeline is not None:
        pipeline.check_alone()
        pipeline.check_batch(config.batch_size)
        dev = pipeline.torch_devices[-1]
    init_distributed(dev)
    resolved = _check_arch(arch)
    if config.deep_supervision and resolved == "unet":
        raise ConfigError("--arch unet has no deep supervision; use dynunet or a genotype")
    deep_supervision = (
        resolved != "unet" if config.deep_supervision is None else config.deep_supervision
    )
    task = load_task(task_dir)
    n_folds = min(config.folds, len(task.training))
    if n_folds < config.folds:
        log.warning("%s: %d training cases: using %d folds", task.root, n_folds, n_folds)
    fold = config.fold
    if fold == ALL_FOLD:  # nnU-Net's fold "all": train (and validate) on every case
        log.warning("--fold all: validation scores the training cases (none is held out)")
    elif n_folds < 2:
        raise ConfigError(
            f"{task.root}: {len(task.training)} training case(s); a fold needs at least 2 "
            f"(one to train on, one to validate): use --fold {ALL_FOLD} to train on every case"
        )
    elif not isinstance(fold, int) or not 0 <= fold < n_folds:
        raise ConfigError(
            f"--fold {fold} is out of range: the task has {n_folds} folds "
            f"(0..{n_folds - 1}, or {ALL_FOLD})"
        )
    patch = check_patch(resolved, config.patch) if config.patch is not None else None
    if patch is not None:
        check_network(
            patch,
            batch=config.batch_size,
            device=str(dev),
            what=f"training on --patch {' '.join(map(str, patch))} (batch {config.batch_size})",
            width=config.width,
            in_channels=task.num_channels,
            num_classes=len(task.labels),
        )
    settings = {
        **config.to_json(),
        "task": str(Path(task_dir).resolve()),
        "arch": arch.to_dict() if isinstance(arch, Genotype) else str(arch),
        "folds": n_folds,
        "deep_supervision": deep_supervision,
        **(extra_settings or {}),
        "pipeline": pipeline.to_json() if pipeline is not None else None,
    }
    arch_input = None if isinstance(arch, Genotype) or str(arch) in ("unet", "dynunet") else arch
    folder = RunFolder.open(
        run_dir,
        kind,
        settings,
        resume=resume,
        mutable=TrainConfig.MUTABLE,
        added=TrainConfig.ADDED_SETTINGS,
        inputs=(task.root, arch_input, (extra_settings or {}).get("weights")),
        task_root=task.root,
        checkpoint=LAST,
        complete=MODEL_FILE,
    )
    run, resumed = folder.path, folder.resumed
    if resumed and (run / MODEL_FILE).is_file() and (run / WEIGHTS_FILE).is_file():
        log.info("%s: the run is already complete", run)
        folder.release()
        return run
    started = False
    try:
        work, plan, split = prepare_work(
            task.root,
            run,
            work_dir,
            workers=config.workers,
            folds=n_folds,
            fold=fold,
            progress=progress,
        )
        if patch is None:
            patch = default_patch(plan, resolved)
        batch_dice = config.batch_dice
        if batch_dice is None:
            batch_dice = nnunet_batch_dice(patch, plan.median_shape_after_resampling)
        config = config.replace(
            patch=patch, deep_supervision=deep_supervision, batch_dice=batch_dice
        )
        seed_everything(config.seed)
        model = build_model(
            resolved,
            plan.num_channels,
            plan.num_classes,
            width=config.width,
            deep_supervision=deep_supervision,
            patch=patch,
            spacing=plan.target_spacing,
        )
        frozen = prepare(model, run) if prepare is not None else []
        validate = _make_validate(work / "cache", split["val"], patch, dev, plan.num_classes)
        trainer = make_trainer(
            model,
            config,
            pipeline=pipeline,
            cache_dir=work / "cache",
            train_cases=split["train"],
            run_dir=run,
            device=dev,
            validate=validate,
            frozen=frozen,
            progress=progress,
            on_epoch_end=on_epoch_end,
        )
        started = True
        result = trainer.fit(resume=resumed)
    except BaseException:
        if not started:
            folder.discard()
        folder.release()
        raise
    if is_main():
        # a pipeline over several devices predicts through its partitions, as it validates
        spread = pipeline is not None and len(set(pipeline.torch_devices)) > 1
        scorer = trainer.net if spread else model
        post = (
            decide_postprocessing(
                scorer,
                task,
                work / "cache",
                split["val"],
                patch,
                device=dev,
                num_classes=plan.num_classes,
            )
            if config.postprocess
            else None
        )
        params = sum(p.numel() for p in model.parameters())
        spec = ModelSpec(
            arch="genotype" if isinstance(resolved, Genotype) else resolved,
            in_channels=plan.num_channels,
            out_channels=plan.num_classes,
            patch=patch,
            plan=plan,
            genotype=resolved if isinstance(resolved, Genotype) else None,
            width=config.width,
            deep_supervision=deep_supervision,
            info={
                "kind": kind,
                "task": plan.task_name,
                "fold": fold,
                "seed": config.seed,
                "epochs": result.epochs,
                "epochs_planned": config.epochs,
                "stopped_by_time_budget": result.stopped_by_time,
                "recipe": {
                    "augment": config.augment.to_json() if config.augment.active else None,
                    "deep_supervision": deep_supervision,
                    "batch_dice": config.batch_dice,
                    "foreground_fraction": foreground_fraction(config.batch_size),
                    "batch_size": config.batch_size,
                    "optimizer": config.optimizer,
                    "lr": config.learning_rate,
                    "weight_decay": config.decay,
                    "momentum": config.momentum,
                    "poly_exponent": config.poly_exponent,
                    "grad_clip": config.grad_clip,
                    "postprocessing": post.to_json() if post is not None else None,
                },
                "params": params,
                "best_val_dice": result.best_dice,
                "best_epoch": result.best_epoch,
                "final_val_dice": result.final_dice,
                "seconds_per_epoch": result.seconds_per_epoch,
                "train_cases": split["train"],
                "val_cases": split["val"],
            },
        )
        with atomic_open(run / WEIGHTS_FILE, "wb") as f:
            torch.save(model.state_dict(), f)
        if post is not None:
            post.save(run)
        spec.save(run / MODEL_FILE)
    barrier()  # under torchrun, every rank returns once rank 0 has written the model
    folder.release()
    return run
