"""``nasmed compare``: was the search worth it? Found vs random vs matched baselines.

Main entry points: :class:`CompareConfig`, :func:`run_compare`; the statistics are pure
functions in :mod:`nasmed.compare.stats`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasmed.compare.config import CompareConfig, Match

if TYPE_CHECKING:
    from nasmed.compare.runner import CompareResult, run_compare

__all__ = ["CompareConfig", "CompareResult", "Match", "run_compare"]


def __getattr__(name: str) -> Any:
    """The runner loads on first use: the command line parses with the config alone, without
    importing torch (the CPU allocator policy is applied before torch loads)."""
    if name in ("CompareResult", "run_compare"):
        from nasmed.compare import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
