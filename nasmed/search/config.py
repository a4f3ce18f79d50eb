"""Settings of an architecture search: :class:`SearchConfig` and the optional :class:`CostTerm`.

Both are frozen dataclasses validated on construction; a bad value is a
:class:`~nasmed.errors.ConfigError` whose one-line message names the command-line option.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, ClassVar

import torch

from nasmed.engine.defaults import AMP_DTYPES
from nasmed.errors import ConfigError
from nasmed.supernet.gumbel import ScheduleKind, TemperatureSchedule
from nasmed.supernet.plans import Mode
from nasmed.train.augment import AugmentConfig
from nasmed.train.config import check_time_budget

__all__ = [
    "DEFAULT_WEIGHT_LR",
    "CostMetric",
    "CostTerm",
    "Estimator",
    "SearchConfig",
    "WeightOptimizer",
    "parse_cost_budget",
]


class Estimator(str, Enum):
    """How the architecture step turns a sampled child's loss into a gradient of the logits
    (:mod:`nasmed.search.estimators`)."""

    GDAS = "gdas"
    PROXYLESS = "proxyless"
    REINFORCE = "reinforce"


class WeightOptimizer(str, Enum):
    """Optimiser of the supernet's weights."""

    SGD = "sgd"
    ADAMW = "adamw"


#: Initial learning rate of the weights (cosine-decayed per epoch to 1% of it).
DEFAULT_WEIGHT_LR = {WeightOptimizer.SGD: 1e-2, WeightOptimizer.ADAMW: 1e-3}


class CostMetric(str, Enum):
    """What the cost-aware term budgets (see :mod:`nasmed.supernet.cost`): declared params,
    FLOPs or activation memory, or ``latency`` (measured seconds per step, profiled once per
    device and cached)."""

    PARAMS = "params"
    FLOPS = "flops"
    MEMORY = "memory"
    LATENCY = "latency"

    @property
    def key(self) -> str:
        """The key of :func:`~nasmed.supernet.expected_cost`'s result."""
        return {"memory": "act_bytes", "latency": "latency_s"}.get(self.value, self.value)


_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


@dataclass(frozen=True)
class CostTerm:
    """A budget on the expected cost of the sampled child, added to the architecture loss.

    The penalty is ``weight * max(0, E[cost] / budget - 1)``: zero under the budget, growing
    linearly with the relative excess above it. ``E[cost]`` is differentiable in the
    architecture logits (:func:`~nasmed.supernet.expected_cost`).

    Attributes:
        metric: ``params``, ``flops`` (per forward pass), ``memory`` (activation bytes kept
            for the backward pass, batch 1) or ``latency`` (measured seconds of a forward +
            backward pass at batch 2).
        budget: the budget, in parameters, FLOPs, bytes or seconds.
        weight: the penalty's weight.
    """

    metric: CostMetric
    budget: float
    weight: float = 1.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "metric", CostMetric(self.metric))
        except ValueError:
            valid = ", ".join(m.value for m in CostMetric)
            raise ConfigError(
                f"--cost-budget: unknown metric {self.metric!r}; use one of {valid}"
            ) from None
        if not (math.isfinite(self.budget) and self.budget > 0):
            raise ConfigError(f"--cost-budget: the budget must be > 0, got {self.budget}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"--cost-weight must be >= 0, got {self.weight}")

    def penalty(self, expected: dict[str, torch.Tensor]) -> torch.Tensor:
        """The penalty for ``expected`` costs (the output of ``expected_cost``)."""
        ratio = expected[self.metric.key] / self.budget
        return self.weight * torch.relu(ratio - 1.0)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"metric": self.metric.value, "budget": self.budget, "weight": self.weight}


def parse_cost_budget(text: str, weight: float = 1.0) -> CostTerm:
    """``"memory=2G"``, ``"params=1.5M"``, ``"flops=40e9"`` -> :class:`CostTerm`.

    Suffixes k, M, G, T multiply by powers of 1000 (a trailing ``B`` is ignored: ``2GB``).

    Raises:
        ConfigError: not ``METRIC=VALUE``, or a bad metric or value.
    """
    metric, sep, value = text.partition("=")
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMgGtT]?)[bB]?\s*", value)
    if not sep or match is None:
        raise ConfigError(
            f"--cost-budget {text!r}: expected METRIC=VALUE, e.g. memory=2G, params=1.5M, flops=40G"
        )
    try:
        number = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    except ValueError:
        raise ConfigError(f"--cost-budget {text!r}: {match.group(1)!r} is not a number") from None
    return CostTerm(metric.strip().lower(), number, weight)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a bilevel architecture search.

    Attributes:
        space: search space name (``searchspaces.list_spaces()``) or a YAML file.
        epochs: epochs in all, warm-up included.
        warmup_epochs: first epochs that train the weights only (uniformly sampled children).
        steps_per_epoch: steps per epoch; after the warm-up a step is one weights update and one
            architecture update.
        patch: training patch (``None``: the space's ``default_patch``).
        batch_size: patches per batch.
        mode: ``sampled`` (hard samples; only sampled ops run) or ``mixed`` (DARTS: every op
            runs, softmax-weighted; the estimator is not used).
        estimator: the architecture gradient: ``gdas`` (straight-through Gumbel),
            ``proxyless`` (binary gates over two sampled ops) or ``reinforce`` (score function,
            forward only); see docs/search.md for the comparison that chose the default.
        temperature: ``linear`` or ``exponential`` annealing, per epoch, from ``tau_start``
            (end of the warm-up) to ``tau_end`` (last epoch); only ``gdas`` uses it.
        tau_start: first temperature.
        tau_end: last temperature.
        entropy_weight: how far the entropy step makes the search decide, independent of the
            search's length: ramped linearly from 0 at the first search epoch to its peak at
            the last, it multiplies a near-uniform choice's log-odds by about
            ``exp(entropy_weight)`` over the whole search (0: no entropy step).
        weight_optimizer: ``sgd`` (Nesterov, momentum 0.9) or ``adamw``.
        weight_lr: initial learning rate of the weights (default 1e-2 SGD, 1e-3 AdamW);
            cosine-decayed per epoch to 1% of it.
        weight_decay: of the weights' optimiser (default 3e-5 SGD, 1e-2 AdamW).
        arch_lr: Adam(W) learning rate of the architecture logits (each step moves a logit
            by up to about this much).
        arch_weight_decay: decoupled (AdamW) weight decay of the architecture logits (default
            0; a coupled L2 term swamps their gradients of about 1e-5).
        grad_clip: gradient-norm clip of the weights (0: none).
        cost: optional cost-aware term of the architecture loss.
        width: channel multiplier of the supernet.
        val_every: validate the argmax architecture every this many epochs (and after the last).
        workers: patch-loader processes per half.
        seed: seeds the weights, the patches and the Gumbel samples.
        augment: augmentation of the weight steps' patches (nnU-Net's; ``AugmentConfig.off()``).
        time_budget: stop after the epoch that would otherwise pass this many seconds (may
            change on resume).
        amp: mixed precision of the weight and architecture steps (``None``: on CUDA only).
        amp_dtype: ``auto`` (float16 with grad scalers on CUDA, bfloat16 on CPU), ``bf16`` or
            ``fp16`` (CUDA only).
        activation_checkpointing: recompute the supernet's cells in the backward pass
            (:mod:`nasmed.engine.activation`): less memory, about one more forward pass.
    """

    #: settings that may change on resume (a resumed search may get more or less time)
    MUTABLE: ClassVar[tuple[str, ...]] = ("workers", "val_every", "device", "time_budget")
    #: settings added after the first release, with the value a run recorded without them had
    ADDED_SETTINGS: ClassVar[dict[str, Any]] = {
        "amp": False,
        "amp_dtype": "auto",
        "activation_checkpointing": False,
    }

    space: str = "scnas"
    epochs: int = 50
    warmup_epochs: int = 10
    steps_per_epoch: int = 100
    patch: tuple[int, int, int] | None = None
    batch_size: int = 2
    mode: Mode = Mode.SAMPLED
    estimator: Estimator = Estimator.GDAS
    temperature: ScheduleKind = ScheduleKind.LINEAR
    tau_start: float = 1.0
    tau_end: float = 1.0
    entropy_weight: float = 4.0
    weight_optimizer: WeightOptimizer = WeightOptimizer.SGD
    weight_lr: float | None = None
    weight_decay: float | None = None
    arch_lr: float = 0.05
    arch_weight_decay: float = 0.0
    grad_clip: float = 12.0
    cost: CostTerm | None = None
    width: float = 1.0
    val_every: int = 1
    workers: int = 0
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    time_budget: float | None = None
    amp: bool | None = False
    amp_dtype: str = "auto"
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name, enum, option in (
            ("mode", Mode, "--mode"),
            ("estimator", Estimator, "--estimator"),
            ("temperature", ScheduleKind, "--temperature"),
            ("weight_optimizer", WeightOptimizer, "--optimizer"),
        ):
            try:
                object.__setattr__(self, name, enum(getattr(self, name)))
            except ValueError:
                valid = ", ".join(m.value for m in enum)
                raise ConfigError(
                    f"{option} {getattr(self, name)!r} is not one of {valid}"
                ) from None
        if self.patch is not None:
            patch = tuple(int(p) for p in self.patch)
            if len(patch) != 3 or min(patch) < 1:
                raise ConfigError(f"--patch must be 3 positive sides, got {list(self.patch)}")
            object.__setattr__(self, "patch", patch)
        checks = [
            (bool(self.space), "--space must name a search space"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (
                0 <= self.warmup_epochs < self.epochs,
                f"--warmup must be in 0..epochs-1 ({self.epochs - 1}), got {self.warmup_epochs}",
            ),
            (self.steps_per_epoch >= 1, f"--steps must be >= 1, got {self.steps_per_epoch}"),
            (self.batch_size >= 1, f"--batch must be >= 1, got {self.batch_size}"),
            (self.tau_start > 0 and self.tau_end > 0, "temperatures must be > 0"),
            (self.weight_lr is None or self.weight_lr > 0, f"--lr must be > 0: {self.weight_lr}"),
            (
                self.weight_decay is None or self.weight_decay >= 0,
                f"weight decay must be >= 0, got {self.weight_decay}",
            ),
            (self.arch_lr > 0, f"--arch-lr must be > 0, got {self.arch_lr}"),
            (self.arch_weight_decay >= 0, "arch weight decay must be >= 0"),
            (
                math.isfinite(self.entropy_weight) and self.entropy_weight >= 0,
                f"--entropy-weight must be >= 0, got {self.entropy_weight}",
            ),
            (self.grad_clip >= 0, f"grad clip must be >= 0, got {self.grad_clip}"),
            (self.width > 0, f"--width must be > 0, got {self.width}"),
            (self.val_every >= 1, f"--val-every must be >= 1, got {self.val_every}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (
                self.amp_dtype in AMP_DTYPES,
                f"--amp-dtype must be one of {', '.join(AMP_DTYPES)}, not {self.amp_dtype!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        check_time_budget(self.time_budget)
        if self.cost is not None and not isinstance(self.cost, CostTerm):
            raise ConfigError(f"cost must be a CostTerm, got {type(self.cost).__name__}")

    @property
    def search_epochs(self) -> int:
        """Epochs that also update the architecture."""
        return self.epochs - self.warmup_epochs

    def schedule(self) -> TemperatureSchedule:
        """The temperature over the search epochs."""
        return TemperatureSchedule(
            self.tau_start, self.tau_end, max(1, self.search_epochs), self.temperature
        )

    def tau(self, epoch: int) -> float:
        """Temperature of ``epoch`` (``tau_start`` during the warm-up)."""
        if epoch < self.warmup_epochs:
            return self.tau_start
        return self.schedule()(epoch - self.warmup_epochs)

    def entropy_weight_at(self, epoch: int) -> float:
        """Weight of the entropy term in ``epoch``: 0 in the warm-up and the first search epoch,
        rising linearly to :attr:`entropy_weight` at the last (decide late, but decide)."""
        if epoch < self.warmup_epochs or self.search_epochs < 2:
            return self.entropy_weight if epoch >= self.warmup_epochs else 0.0
        return self.entropy_weight * (epoch - self.warmup_epochs) / (self.search_epochs - 1)

    @property
    def entropy_steps(self) -> float:
        """The sum over the search's architecture steps of ``entropy_weight_at / entropy_weight``
        (the ramp): the entropy step's rate is ``entropy_weight_at(epoch) / entropy_steps``, so
        its rates add up to :attr:`entropy_weight` whatever the number of steps."""
        ramp = sum(
            self.entropy_weight_at(e) / self.entropy_weight if self.entropy_weight > 0 else 0.0
            for e in range(self.warmup_epochs, self.epochs)
        )
        return max(ramp, 1.0) * self.steps_per_epoch

    @property
    def learning_rate(self) -> float:
        """Initial learning rate of the weights (given or the optimiser's default)."""
        return (
            self.weight_lr
            if self.weight_lr is not None
            else DEFAULT_WEIGHT_LR[self.weight_optimizer]
        )

    def weight_lr_at(self, epoch: int) -> float:
        """Cosine decay per epoch from :attr:`learning_rate` to 1% of it."""
        lr, low = self.learning_rate, self.learning_rate * 0.01
        return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * epoch / self.epochs))

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (recorded in ``run.json`` and the genotype)."""
        data = asdict(self)
        for key in ("mode", "estimator", "temperature", "weight_optimizer"):
            data[key] = getattr(self, key).value
        data["patch"] = list(self.patch) if self.patch is not None else None
        data["cost"] = self.cost.to_json() if self.cost is not None else None
        data["augment"] = self.augment.to_json()
        return data
