"""Policy search: Fast AutoAugment (full) and AutoCLINT's light variant.

Both score a policy by *density matching*: a model trained without augmentation should find the
augmented held-out slices as easy as the plain ones, so the score is that model's loss on the
augmented held-out set (lower is better).

* :func:`full_search` (Lim et al. 2019): the training cases are cut into K folds (by case); for each
  fold a model is trained on D_M (the other folds) without augmentation, then Optuna's TPE proposes
  policies (``sub_policies`` sub-policies of two steps each) scored on D_A (the fold); the top N
  policies of every fold are merged.
* :func:`light_search` (AutoCLINT): one split, no extra model: ``draws`` random draws of three
  sub-policies from :data:`DEFAULT_POOL`, each scored with the current model on the validation
  slices; the top five draws are returned (to be appended to the training augmentation).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
import torch

from decathlon.slices import SliceSet
from decathlon.splits import kfold_splits
from nasmed.classify.autoaugment.ops import op_names
from nasmed.classify.autoaugment.policy import Policy, Step, SubPolicy
from nasmed.classify.saol import Classifier
from nasmed.classify.selfsup import task_loss
from nasmed.errors import ConfigError

__all__ = ["DEFAULT_POOL", "FullSearchConfig", "full_search", "light_search", "policy_loss"]

log = logging.getLogger(__name__)


def _sp(a: str, pa: float, ma: float, b: str, pb: float, mb: float) -> SubPolicy:
    return SubPolicy((Step(a, pa, ma), Step(b, pb, mb)))


# A fixed pool of medical-slice sub-policies for the light search.
DEFAULT_POOL: tuple[SubPolicy, ...] = (
    _sp("rotate", 0.7, 0.3, "gamma", 0.5, 0.4),
    _sp("scale", 0.6, 0.4, "contrast", 0.5, 0.3),
    _sp("translate", 0.6, 0.3, "brightness", 0.5, 0.3),
    _sp("shear", 0.5, 0.3, "blur", 0.4, 0.3),
    _sp("elastic", 0.6, 0.5, "noise", 0.5, 0.3),
    _sp("hflip", 0.5, 0.0, "rotate", 0.5, 0.2),
    _sp("vflip", 0.5, 0.0, "scale", 0.5, 0.2),
    _sp("bias_field", 0.6, 0.5, "gamma", 0.4, 0.3),
    _sp("cutout", 0.5, 0.4, "translate", 0.4, 0.2),
    _sp("sharpen", 0.5, 0.4, "contrast", 0.5, 0.2),
    _sp("rotate", 0.4, 0.6, "elastic", 0.4, 0.3),
    _sp("noise", 0.5, 0.5, "blur", 0.5, 0.2),
    _sp("gamma", 0.6, 0.6, "brightness", 0.4, 0.4),
    _sp("scale", 0.5, 0.6, "translate", 0.5, 0.4),
    _sp("hflip", 0.5, 0.0, "bias_field", 0.5, 0.3),
    _sp("shear", 0.4, 0.5, "cutout", 0.4, 0.2),
)


def policy_loss(
    model: Classifier,
    policy: Policy,
    x: torch.Tensor,
    y: torch.Tensor,
    multilabel: bool,
    seed: int = 0,
    batch: int = 128,
) -> float:
    """Mean loss of ``model`` on ``x`` augmented by ``policy`` (a fixed draw for ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xb = policy.apply(x[i : i + batch], gen)
            yb = y[i : i + batch].to(xb.device)
            total += float(task_loss(model(xb).logits, yb, multilabel)) * xb.shape[0]
            n += xb.shape[0]
    model.train()
    return total / max(n, 1)


def light_search(
    model: Classifier,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    multilabel: bool,
    *,
    seconds: float,
    pool: tuple[SubPolicy, ...] = DEFAULT_POOL,
    draws: int = 100,
    per_draw: int = 3,
    top: int = 5,
    seed: int = 0,
) -> Policy:
    """AutoCLINT's light search; stops early when ``seconds`` run out (at least one draw)."""
    rng = random.Random(seed)
    end = time.perf_counter() + seconds
    scored: list[tuple[float, Policy]] = []
    for i in range(draws):
        if i > 0 and time.perf_counter() >= end:
            break
        pol = Policy(tuple(rng.sample(pool, per_draw)))
        scored.append((policy_loss(model, pol, x_val, y_val, multilabel, seed + i), pol))
    scored.sort(key=lambda item: item[0])
    log.info("light search: %d draws scored, best loss %.4f", len(scored), scored[0][0])
    out = Policy()
    for _, pol in scored[:top]:
        out = out + pol
    return out


@dataclass(frozen=True)
class FullSearchConfig:
    """K folds, TPE trials per fold, top N policies kept per fold, sub-policies per policy."""

    folds: int = 2
    trials: int = 30
    top_n: int = 2
    sub_policies: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2 or self.trials < 1 or self.top_n < 1 or self.sub_policies < 1:
            raise ConfigError(
                f"full autoaugment search needs folds >= 2 and positive counts: {self}"
            )


def _suggest(trial: optuna.Trial | optuna.trial.FixedTrial, n_sub: int) -> Policy:
    ops = op_names()
    subs = []
    for i in range(n_sub):
        steps = tuple(
            Step(
                trial.suggest_categorical(f"op_{i}_{j}", ops),
                trial.suggest_float(f"prob_{i}_{j}", 0.0, 1.0),
                trial.suggest_float(f"mag_{i}_{j}", 0.0, 1.0),
            )
            for j in range(2)
        )
        subs.append(SubPolicy(steps))
    return Policy(tuple(subs))


def full_search(
    train: SliceSet,
    fit: Callable[[SliceSet, float], Classifier],
    multilabel: bool,
    *,
    seconds: float,
    cfg: FullSearchConfig | None = None,
    device: torch.device | None = None,
) -> tuple[Policy, dict[str, float]]:
    """Fast AutoAugment over ``train``; ``fit(D_M, seconds)`` trains a plain fold model.

    Returns:
        The merged policy and a report (seconds spent, trials run, best loss of each fold).
    """
    cfg = cfg or FullSearchConfig()
    start = time.perf_counter()
    folds = kfold_splits(train.case_names, cfg.folds, cfg.seed)
    per_fold = seconds / len(folds)
    merged = Policy()
    report: dict[str, float] = {"trials": 0}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for k, split in enumerate(folds):
        fold_end = start + per_fold * (k + 1)
        model = fit(train.select_cases(split["train"]), 0.5 * per_fold)
        d_a = train.select_cases(split["val"])
        x = torch.from_numpy(np.ascontiguousarray(d_a.images))
        if device is not None:
            x = x.to(device)
        y = torch.from_numpy(d_a.targets.astype(np.float32))

        def objective(
            trial: optuna.Trial, model: Classifier = model, x: torch.Tensor = x, y: torch.Tensor = y
        ) -> float:
            return policy_loss(
                model, _suggest(trial, cfg.sub_policies), x, y, multilabel, cfg.seed + trial.number
            )

        study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=cfg.seed + k)
        )
        timeout = max(0.1, fold_end - time.perf_counter())
        study.optimize(objective, n_trials=cfg.trials, timeout=timeout)
        done = [t for t in study.trials if t.value is not None and math.isfinite(t.value)]
        done.sort(key=lambda t: float(t.value))  # type: ignore[arg-type]
        for t in done[: cfg.top_n]:
            merged = merged + _suggest(optuna.trial.FixedTrial(t.params), cfg.sub_policies)
        report["trials"] += len(done)
        if done:  # no key when no trial finished: the report stays valid JSON
            report[f"fold{k}_best_loss"] = float(done[0].value)  # type: ignore[arg-type]
    report["seconds"] = time.perf_counter() - start
    return merged, report
