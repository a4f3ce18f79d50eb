"""Public home of the Gumbel sampler: re-exports :mod:`nasmed.supernet.gumbel`.

The sampler lives below the supernet (which draws from it); nothing inside nasmed imports this
module, it keeps ``from nasmed.search.gumbel import ...`` working for users.
"""

from __future__ import annotations

from nasmed.supernet.gumbel import (
    ScheduleKind,
    TemperatureSchedule,
    entropy,
    gumbel_noise,
    gumbel_softmax_st,
)

__all__ = [
    "ScheduleKind",
    "TemperatureSchedule",
    "entropy",
    "gumbel_noise",
    "gumbel_softmax_st",
]
