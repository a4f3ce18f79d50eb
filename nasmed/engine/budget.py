"""A wall-clock budget for a fit loop: stop before the next epoch would pass it."""

from __future__ import annotations

import time

__all__ = ["TimeBudget"]


class TimeBudget:
    """Seconds allowed for a fit (``None``: unlimited), measured from :meth:`start`.

    An epoch is started only if, at the mean pace of the epochs done so far, it ends within the
    budget; so a run ends in time with its last epoch validated and checkpointed.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.started_at = time.monotonic()

    def start(self) -> None:
        """Start (or restart, on resume) the clock."""
        self.started_at = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since :meth:`start`."""
        return time.monotonic() - self.started_at

    def fraction(self) -> float:
        """The share of the budget spent, in [0, 1] (0 without a budget)."""
        if self.seconds is None:
            return 0.0
        return min(1.0, self.elapsed() / self.seconds)

    def exhausted(self, epochs_done: int) -> bool:
        """Whether another epoch, at the mean pace of ``epochs_done``, would pass the budget."""
        if self.seconds is None or epochs_done <= 0:
            return False
        elapsed = self.elapsed()
        return elapsed + elapsed / epochs_done > self.seconds
