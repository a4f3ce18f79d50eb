"""The one exception type of :mod:`searchspaces`."""

from __future__ import annotations

__all__ = ["SpaceError"]


class SpaceError(ValueError):
    """A search space is invalid: bad YAML, unknown operation, impossible sizes.

    The message is one line naming the space (file or name), the field and the fix.
    """
