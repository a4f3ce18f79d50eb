"""Settings of a comparison: :class:`CompareConfig` (frozen, validated on construction).

A bad value is a :class:`~nasmed.errors.ConfigError` whose one-line message names the
command-line option, raised before anything is written.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from nasmed.errors import ConfigError
from nasmed.models.names import BASELINES

__all__ = ["DEFAULT_WIDTHS", "CompareConfig", "Match"]

#: Widths tried when a baseline is matched to the found network's cost.
DEFAULT_WIDTHS = (0.125, 0.1875, 0.25, 0.375, 0.5, 0.625, 0.75, 1.0, 1.25, 1.5)


class Match(str, Enum):
    """What a baseline's width is matched on (to the first ``--arch`` network)."""

    PARAMS = "params"
    FLOPS = "flops"
    STEP_TIME = "step_time"


def _paths(values: Any, option: str) -> tuple[Path, ...]:
    if isinstance(values, (str, os.PathLike)):
        raise ConfigError(f"{option}: expected a list of paths, got one string {str(values)!r}")
    return tuple(Path(v) for v in values)


@dataclass(frozen=True)
class CompareConfig:
    """What ``nasmed compare`` trains and how.

    Every network is trained on fold ``fold`` of the task's ``folds``-fold splits, once per seed
    ``0..seeds-1``, with the same budget: ``epochs`` epochs of ``steps_per_epoch`` steps, or,
    with ``time_budget``, as many epochs as fit that many seconds of training steps at the
    network's measured step time (validation not counted).

    Attributes:
        out: the comparison folder (``compare.csv``, ``compare.json``, ``compare.png``, ``runs/``).
        archs: found genotypes (``genotype.json`` files or search run folders).
        random: random genotypes drawn from the same space.
        baselines: baseline networks (``unet``, ``dynunet``).
        seeds: training seeds per network (``0..seeds-1``).
        epochs: epochs per run (``None`` with ``time_budget``).
        time_budget: seconds of training steps per run (``None`` with ``epochs``).
        search_runs: search run folders (``checkpoint.pt``) for the supernet's shared-weight
            estimate of each random architecture (and their genotypes for the agreement).
        space: the space of the random genotypes when no ``archs`` are given (otherwise
            theirs).
        match: what the baselines are matched on; each baseline is trained at the width that
            matches each criterion (one run if the widths coincide).
        widths: widths tried for the matching.
        patch: training patch (default: the task plan's, rounded to every network's divisor).
        steps_per_epoch: steps per epoch.
        batch_size: patches per step.
        optimizer: ``sgd`` or ``adamw`` (for every network).
        lr: initial learning rate (default: the optimiser's).
        fold: which fold validates.
        folds: folds of the splits (at most the number of training cases).
        seed: draws the random genotypes.
        timing_steps: timed training steps per step-time measurement (the median is kept).
        device: torch device.
        amp: mixed precision for every run's training and its step-time measurement
            (``None``: on with CUDA only; on a CPU, bfloat16 autocast); recorded in ``run.json``
            only when given, so comparisons made before it existed resume.
        resume: continue the comparison in ``out`` (finished runs are skipped).
        progress: a progress bar over the runs.
        jobs: training runs at once, each in its own process with an equal share of the torch
            threads (:mod:`nasmed.compare.jobs`); not part of the comparison's settings (a
            comparison may resume with another value). On CPU a run's numbers may differ in the
            last bits between thread counts (the order of reductions), not otherwise.
    """

    out: Path
    archs: tuple[Path, ...] = ()
    random: int = 8
    baselines: tuple[str, ...] = ("unet", "dynunet")
    seeds: int = 2
    epochs: int | None = None
    time_budget: float | None = None
    search_runs: tuple[Path, ...] = ()
    space: str = "scnas"
    match: tuple[Match, ...] = (Match.PARAMS, Match.FLOPS, Match.STEP_TIME)
    widths: tuple[float, ...] = DEFAULT_WIDTHS
    patch: tuple[int, int, int] | None = None
    steps_per_epoch: int = 250
    batch_size: int = 2
    optimizer: str = "sgd"
    lr: float | None = None
    fold: int = 0
    folds: int = 5
    seed: int = 0
    timing_steps: int = 3
    device: str = "auto"
    amp: bool | None = None
    resume: bool = field(default=False, compare=False)
    progress: bool = field(default=True, compare=False)
    jobs: int = field(default=1, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "out", Path(self.out))
        set_(self, "archs", _paths(self.archs, "--arch"))
        set_(self, "search_runs", _paths(self.search_runs, "--search-run"))
        set_(self, "baselines", tuple(self.baselines))
        try:
            set_(self, "match", tuple(Match(m) for m in self.match))
        except ValueError:
            valid = ", ".join(m.value for m in Match)
            raise ConfigError(f"--match {list(self.match)}: each must be one of {valid}") from None
        set_(self, "widths", tuple(float(w) for w in self.widths))
        if self.patch is not None:
            patch = tuple(int(p) for p in self.patch)
            if len(patch) != 3 or min(patch) < 1:
                raise ConfigError(f"--patch must be 3 positive sides, got {list(self.patch)}")
            set_(self, "patch", patch)
        if self.epochs is not None and self.time_budget is not None:
            raise ConfigError("give either --epochs or --time-budget, not both")
        if self.epochs is None and self.time_budget is None:
            raise ConfigError("give the budget of every run: --epochs E or --time-budget SECONDS")
        bad = [b for b in self.baselines if b not in BASELINES]
        checks = [
            (self.random >= 0, f"--random must be >= 0, got {self.random}"),
            (
                bool(self.archs) or self.random > 0,
                "nothing to compare: --random 0 and no --arch; give a found genotype or "
                "random architectures",
            ),
            (not bad, f"--baselines {bad}: unknown; use any of {', '.join(BASELINES)}"),
            (len(set(self.baselines)) == len(self.baselines), "--baselines: a name twice"),
            (self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}"),
            (self.epochs is None or self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (
                self.time_budget is None
                or (math.isfinite(self.time_budget) and self.time_budget > 0),
                f"--time-budget must be > 0 seconds, got {self.time_budget}",
            ),
            (bool(self.widths) and min(self.widths) > 0, "--widths must be > 0"),
            (self.steps_per_epoch >= 1, f"--steps must be >= 1, got {self.steps_per_epoch}"),
            (self.batch_size >= 1, f"--batch must be >= 1, got {self.batch_size}"),
            (self.optimizer in ("sgd", "adamw"), f"--optimizer {self.optimizer!r}: sgd or adamw"),
            (self.lr is None or self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.fold >= 0, f"--fold must be >= 0, got {self.fold}"),
            (self.folds >= 2, f"--folds must be >= 2, got {self.folds}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (self.timing_steps >= 1, f"--timing-steps must be >= 1, got {self.timing_steps}"),
            (self.jobs >= 1, f"--jobs must be >= 1, got {self.jobs}"),
            (
                not self.baselines or bool(self.match),
                "--match: give at least one criterion for the baselines",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form of the settings that define the comparison (recorded in ``run.json``)."""
        return {
            "archs": [str(p.resolve()) for p in self.archs],
            "random": self.random,
            "baselines": list(self.baselines),
            "seeds": self.seeds,
            "epochs": self.epochs,
            "time_budget": self.time_budget,
            "search_runs": [str(p.resolve()) for p in self.search_runs],
            "space": self.space,
            "match": [m.value for m in self.match],
            "widths": list(self.widths),
            "patch": list(self.patch) if self.patch is not None else None,
            "steps_per_epoch": self.steps_per_epoch,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "fold": self.fold,
            "folds": self.folds,
            "seed": self.seed,
            "timing_steps": self.timing_steps,
            **({} if self.amp is None else {"amp": self.amp}),
        }
