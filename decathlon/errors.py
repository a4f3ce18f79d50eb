"""Exceptions of the Decathlon data layer.

Every error a user can cause (a bad path, an invalid dataset.json, an unreadable image) is a
:class:`DecathlonError`, whose message is one line naming the file and the problem. The CLI prints
that line and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["DatasetError", "DecathlonError", "ImageReadError", "ValidationError"]


class DecathlonError(ValueError):
    """Base class of every user-facing error in :mod:`decathlon`."""


class DatasetError(DecathlonError):
    """A task folder or its ``dataset.json`` is missing, malformed or inconsistent."""


class ImageReadError(DecathlonError):
    """An image file cannot be read, is truncated, or has an unsupported format."""


class ValidationError(DecathlonError):
    """A task failed validation; ``problems`` holds every problem found, one line each."""

    def __init__(self, task_dir: str, problems: list[str]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        first = self.problems[0] if self.problems else "unknown problem"
        more = f" (and {n - 1} more)" if n > 1 else ""
        super().__init__(f"{task_dir}: {first}{more}")
