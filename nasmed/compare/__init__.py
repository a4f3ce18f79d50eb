"""``nasmed compare``: was the search worth it? Found vs random vs matched baselines.

Main entry points: :class:`CompareConfig`, :func:`run_compare`; the statistics are pure
functions in :mod:`nasmed.compare.stats`.
"""

from __future__ import annotations

from nasmed.compare.config import CompareConfig, Match
from nasmed.compare.runner import CompareResult, run_compare

__all__ = ["CompareConfig", "CompareResult", "Match", "run_compare"]
