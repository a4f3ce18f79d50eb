"""Hard Gumbel-softmax with a straight-through gradient, temperature schedules, entropy.

``gumbel_softmax_st(logits, tau, generator)`` returns a one-hot tensor whose forward value is the
hard sample and whose gradient is that of the soft relaxation ``softmax((logits + g) / tau)``
(GDAS, Dong & Yang 2019). The Gumbel noise is drawn on the CPU from ``generator`` (or torch's
global generator), so a seed gives the same samples on every device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch

__all__ = [
    "ScheduleKind",
    "TemperatureSchedule",
    "entropy",
    "gumbel_noise",
    "gumbel_softmax_st",
]


def gumbel_noise(
    shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Standard Gumbel noise of ``shape`` (float32, CPU), drawn from ``generator``."""
    u = torch.rand(shape, generator=generator, dtype=torch.float32)
    u = u.clamp_(min=1e-10, max=1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def gumbel_softmax_st(
    logits: torch.Tensor,
    tau: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    hard: bool = True,
) -> torch.Tensor:
    """A Gumbel-softmax sample over the last dimension of ``logits``.

    Args:
        logits: unnormalised log-probabilities, ``(..., n)``.
        tau: temperature (> 0); low values make the soft sample close to one-hot.
        generator: CPU generator for the noise (determinism); ``None`` uses torch's global one.
        hard: return the straight-through one-hot (forward value exactly 0/1) instead of the
            soft sample.

    Returns:
        A tensor shaped like ``logits``. With ``hard``, ``argmax(-1)`` is the sampled index and
        the gradient flows to ``logits`` as through the soft sample.
    """
    if tau <= 0:
        raise ValueError(f"temperature must be > 0, got {tau}")
    noise = gumbel_noise(logits.shape, generator).to(device=logits.device, dtype=logits.dtype)
    soft = torch.softmax((logits + noise) / tau, dim=-1)
    if not hard:
        return soft
    index = soft.argmax(dim=-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return one_hot - soft.detach() + soft


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` over the last dimension, one value per row."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


class ScheduleKind(str, Enum):
    """How the temperature moves from ``start`` to ``end``."""

    LINEAR = "linear"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True)
class TemperatureSchedule:
    """Temperature annealed from ``start`` to ``end`` over ``steps`` (epochs or iterations).

    GDAS anneals linearly from 10 to 0.1. ``exponential`` interpolates geometrically (the same
    ratio per step). Past ``steps`` the temperature stays at ``end``.
    """

    start: float = 10.0
    end: float = 0.1
    steps: int = 100
    kind: ScheduleKind = ScheduleKind.LINEAR

    def __post_init__(self) -> None:
        if self.start <= 0 or self.end <= 0:
            raise ValueError(f"temperatures must be > 0, got start={self.start} end={self.end}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        object.__setattr__(self, "kind", ScheduleKind(self.kind))

    def __call__(self, step: int) -> float:
        """Temperature at ``step`` (0-based; ``steps - 1`` gives ``end``)."""
        if self.steps == 1:
            return self.end
        t = min(max(step, 0), self.steps - 1) / (self.steps - 1)
        if self.kind is ScheduleKind.LINEAR:
            return self.start + (self.end - self.start) * t
        return math.exp(math.log(self.start) + (math.log(self.end) - math.log(self.start)) * t)
