"""``nasmed classify`` as a plain function: slices -> (search) -> AutoCLINT training -> files.

:func:`classify` writes into ``out_dir``: ``predictions.csv`` (the held-out test slices' class
probabilities and labels), ``metrics.json`` (AUC per class, accuracy, ALC, ...), ``alc.png``,
``policy.json`` (the augmentation used), ``attention/`` (SAOL attention over test slices),
``anytime/`` (every anytime prediction with its timestamp), ``model.pt`` and ``backbone.pt``
(usable as ``--pretrained``).

The clock starts when :func:`classify` is entered; everything (reading the task, slicing,
searching, training, writing) must fit in the budget. The run ends within the budget plus
:data:`MARGIN_SECONDS` (writing the last files after the trainer's reserve runs out).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from decathlon.datalist import Task, load_task
from decathlon.errors import DatasetError
from decathlon.fsutil import atomic_write_json
from decathlon.io import read_geometry
from decathlon.slices import SliceSet, build_slices, slice_shape, split_by_case
from nasmed.classify.alc import transform_time
from nasmed.classify.autoaugment.policy import Policy
from nasmed.classify.autoaugment.search import FullSearchConfig, full_search, light_search
from nasmed.classify.autoclint import (
    AutoClint,
    ClintConfig,
    ClintResult,
    auto_input_size,
    is_multilabel,
)
from nasmed.classify.backbones import BackboneSpec
from nasmed.classify.outputs import FiguresFn, RunFigures, test_metrics, write_predictions
from nasmed.classify.pretrained import load_pretrained, save_backbone
from nasmed.classify.saol import Classifier, build_classifier
from nasmed.classify.selfsup import LossConfig
from nasmed.engine.checkpoint import make_checkpoint, save_checkpoint
from nasmed.errors import ConfigError

__all__ = [
    "MARGIN_SECONDS",
    "MIN_BUDGET",
    "ClassifyConfig",
    "classify",
    "prepare_slices",
    "pretrain_backbone",
    "train_once",
]

log = logging.getLogger(__name__)

MIN_BUDGET = 3.0  # seconds: below this nothing can be trained and predicted
MARGIN_SECONDS = 2.0  # the run ends within budget + this
FULL_SEARCH_SHARE = 0.3  # of the budget, for --autoaugment full


@dataclass(frozen=True)
class ClassifyConfig:
    """Settings of a classify run; only ``time_budget`` is required."""

    time_budget: float
    head: str = "saol"
    arch: str = "resnet18"
    width: int = 32
    autoaugment: str = "none"
    cutmix: bool = False
    location: bool = False
    distill: bool = False
    axis: int | str = "auto"
    input_size: int | None = None
    min_area: int = 1
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    attention_maps: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.time_budget):
            raise ConfigError(
                f"--time-budget must be a finite number of seconds, not {self.time_budget:g} "
                "(the budget decides when training stops and how the ALC is scored)"
            )
        if self.time_budget < MIN_BUDGET:
            raise ConfigError(
                f"--time-budget {self.time_budget:g} s is too small to train at all; "
                f"give at least {MIN_BUDGET:g} s"
            )
        if self.autoaugment not in ("none", "light", "full"):
            raise ConfigError(
                f"--autoaugment must be none, light or full, not {self.autoaugment!r}"
            )


@dataclass
class PreparedData:
    """The slices of one task split by case, and what the data decided."""

    train: SliceSet
    val: SliceSet
    test: SliceSet | None
    input_size: int
    multilabel: bool
    warnings: list[str]


def _slice_shape(task: Task, axis: int | str) -> list[tuple[int, int]]:
    shapes = []
    for case in task.training:
        geom, _ = read_geometry(case.images[0])
        shapes.append(slice_shape(geom, axis))
    return shapes


def prepare_slices(
    task: Task,
    cfg: ClassifyConfig,
    cache_dir: str | os.PathLike[str] | None,
    with_test: bool = True,
) -> PreparedData:
    """Slice ``task`` and split it by case into train / val (/ test); checks the data is usable.

    Raises:
        DatasetError: too few labelled cases, or no slice shows any foreground class.
    """
    size = cfg.input_size or auto_input_size(_slice_shape(task, cfg.axis))
    names = [c.name for c in task.training]
    fractions = cfg.split if with_test else (cfg.split[0] + cfg.split[2], cfg.split[1])
    if len(names) < len(fractions):
        raise DatasetError(
            f"{task.root}: {len(names)} labelled case(s); classify needs at least "
            f"{len(fractions)} to split by case into train/val{'/test' if with_test else ''}"
        )
    groups = split_by_case(names, fractions, cfg.seed)
    allset = build_slices(
        task, axis=cfg.axis, size=size, min_area=cfg.min_area, cache_dir=cache_dir
    )
    if not allset.targets.any():
        raise DatasetError(
            f"{task.root}: no slice shows any foreground class (min area {cfg.min_area} voxels); "
            "nothing to classify"
        )
    train = allset.select_cases(groups[0])
    warnings = []
    for k, name in enumerate(allset.class_names):
        if not train.targets[:, k].any():
            msg = (
                f"class {name!r} never appears in the training slices; its predictions are guesses"
            )
            log.warning(msg)
            warnings.append(msg)
    test = allset.select_cases(groups[2]) if with_test else None
    return PreparedData(
        train, allset.select_cases(groups[1]), test, size, is_multilabel(train.targets), warnings
    )


def _loss_config(cfg: ClassifyConfig, multilabel: bool) -> LossConfig:
    """Location self-supervision (with its CutMix) and distillation need SAOL's spatial logits."""
    location = cfg.location and cfg.head == "saol"
    return LossConfig(
        multilabel=multilabel,
        cutmix=cfg.cutmix or location,
        location=location,
        distill=cfg.distill and cfg.head == "saol",
    )


def train_once(
    data: PreparedData,
    cfg: ClassifyConfig,
    device: torch.device,
    *,
    deadline: float,
    clock_start: float,
    out_dir: Path | None = None,
    pretrained: str | os.PathLike[str] | None = None,
    policy: Policy | None = None,
    reserve: float = 1.0,
) -> tuple[Classifier, ClintResult]:
    """Build the classifier (from ``pretrained`` if given) and run AutoCLINT until ``deadline``."""
    torch.manual_seed(cfg.seed)
    spec = BackboneSpec(cfg.arch, int(data.train.images.shape[1]), cfg.width)
    model = build_classifier(spec, len(data.train.class_names), cfg.head)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    model.to(device)
    light = None
    if cfg.autoaugment == "light":
        multilabel = data.multilabel

        def light(m: Classifier, xv: torch.Tensor, yv: torch.Tensor, seconds: float) -> Policy:
            return light_search(m, xv, yv, multilabel, seconds=seconds, seed=cfg.seed)

    clint = ClintConfig(
        time_budget=deadline - clock_start,
        loss=_loss_config(cfg, data.multilabel),
        seed=cfg.seed,
        reserve=reserve,
    )
    trainer = AutoClint(
        model,
        clint,
        data.train,
        data.val,
        data.test,
        device,
        clock_start=clock_start,
        out_dir=out_dir,
        policy=policy,
        light_search=light,
    )
    return model, trainer.run()


def _full_policy(
    data: PreparedData, cfg: ClassifyConfig, device: torch.device, seconds: float
) -> tuple[Policy, dict[str, float]]:
    plain = replace(cfg, autoaugment="none")

    def fit(d_m: SliceSet, secs: float) -> Classifier:
        fold = replace(data, train=d_m, test=None)
        now = time.perf_counter()
        model, _ = train_once(
            fold, plain, device, deadline=now + secs, clock_start=now, reserve=0.0
        )
        return model

    return full_search(
        data.train,
        fit,
        data.multilabel,
        seconds=seconds,
        cfg=FullSearchConfig(seed=cfg.seed),
        device=device,
    )


def classify(
    task_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: ClassifyConfig,
    *,
    device: torch.device,
    cache_dir: str | os.PathLike[str] | None = None,
    pretrained: str | os.PathLike[str] | None = None,
    policy: Policy | None = None,
    figures: FiguresFn | None = None,
) -> dict[str, Any]:
    """Classify the slices of ``task_dir`` within ``cfg.time_budget`` s; returns the metrics.

    Args:
        task_dir: the task folder.
        out_dir: the run folder (created if needed).
        cfg: settings.
        device: where to train.
        cache_dir: slice cache folder (None: no cache).
        pretrained: a ``backbone.pt`` to start from.
        policy: augmentation to train with from the start (searches add to it).
        figures: draws ``alc.png`` and ``attention/`` (the CLI passes
            :func:`nasmed.viz.classify.write_run_figures`; ``None``: no figures, no matplotlib).
    """
    start = time.perf_counter()
    deadline = start + cfg.time_budget

    out = Path(out_dir)
    task = load_task(task_dir)
    data = prepare_slices(task, cfg, cache_dir)
    assert data.test is not None
    policy, search_report = policy or Policy(), dict[str, float]()
    if cfg.autoaugment == "full":
        found, search_report = _full_policy(data, cfg, device, FULL_SEARCH_SHARE * cfg.time_budget)
        policy = policy + found
    reserve = 1.0 + min(0.05 * cfg.time_budget, 10.0)  # last prediction, files, plots
    if time.perf_counter() + reserve + 0.5 > deadline:
        raise ConfigError(
            f"--time-budget {cfg.time_budget:g} s: preparing the data took "
            f"{time.perf_counter() - start:.1f} s and nothing is left to train; raise the budget"
        )
    model, res = train_once(
        data,
        cfg,
        device,
        deadline=deadline,
        clock_start=start,
        out_dir=out,
        pretrained=pretrained,
        policy=policy,
        reserve=reserve,
    )
    if res.final_probs is None or res.steps == 0:
        raise ConfigError(f"--time-budget {cfg.time_budget:g} s: no training step fitted; raise it")
    write_predictions(out / "predictions.csv", data.test, res.final_probs, data.multilabel)
    metrics = test_metrics(data.test, res.final_probs, data.multilabel)
    times = [p.seconds for p in res.predictions]
    scores = [p.score or 0.0 for p in res.predictions]
    res.policy.save(out / "policy.json")
    n_att = 0
    if figures is not None:
        run = RunFigures(
            out_dir=out,
            model=model,
            test=data.test,
            probs=res.final_probs,
            times=times,
            scores=scores,
            time_budget=cfg.time_budget,
            alc=res.alc or 0.0,
            attention_maps=cfg.attention_maps,
            device=device,
        )
        n_att = figures(run)
    save_checkpoint(
        out / "model.pt",
        make_checkpoint(
            "classify",
            model=model.state_dict(),
            config=_jsonable(asdict(cfg)),
            classes=list(data.test.class_names),
        ),
    )
    save_backbone(out / "backbone.pt", model)
    metrics.update(
        alc=res.alc,
        budget_seconds=cfg.time_budget,
        elapsed_seconds=time.perf_counter() - start,
        anytime=[{"seconds": t, "score": s} for t, s in zip(times, scores)],
        anytime_log_time=[transform_time(t, cfg.time_budget) for t in times],
        epochs=res.epochs,
        steps=res.steps,
        best_val=res.best_val if math.isfinite(res.best_val) else None,
        multilabel=data.multilabel,
        input_size=data.input_size,
        train_slices=len(data.train),
        train_cases=list(data.train.case_names),
        val_cases=list(data.val.case_names),
        val_slices=len(data.val),
        head=cfg.head,
        autoaugment=cfg.autoaugment,
        policy_sub_policies=len(res.policy),
        search=search_report or res.search,
        attention_maps=n_att,
        warnings=data.warnings,
        classes=list(data.test.class_names),
    )
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def pretrain_backbone(
    source_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    cfg: ClassifyConfig,
    *,
    device: torch.device,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Train on the slices of the source task for ``cfg.time_budget`` s; save its backbone."""
    start = time.perf_counter()
    task = load_task(source_dir)
    data = prepare_slices(task, cfg, cache_dir, with_test=False)
    model, res = train_once(
        data, cfg, device, deadline=start + cfg.time_budget, clock_start=start, reserve=0.5
    )
    if res.steps == 0:
        raise ConfigError(f"--pretrain-budget {cfg.time_budget:g} s: no training step fitted")
    log.info("pretrained on %s: %d steps, best validation %.4f", task.name, res.steps, res.best_val)
    return save_backbone(out_path, model)
