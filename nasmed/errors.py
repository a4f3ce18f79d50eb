"""Exceptions of nasmed that a user can cause.

Like :class:`decathlon.errors.DecathlonError`, a :class:`NasmedError` carries one line naming the
file or setting and the problem; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

__all__ = ["ConfigError", "GenotypeError", "NasmedError", "RunDirError"]


class NasmedError(ValueError):
    """Base class of every user-facing error in :mod:`nasmed`."""


class ConfigError(NasmedError):
    """An impossible setting (a patch that does not fit, chunks larger than the batch, ...)."""


class GenotypeError(NasmedError):
    """A genotype file is malformed, or belongs to another (or a changed) search space."""


class RunDirError(NasmedError):
    """A run folder holds another run, or cannot be resumed."""
