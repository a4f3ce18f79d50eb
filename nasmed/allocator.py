"""The CPU memory allocator (glibc malloc) for tensors: ``cache``, ``lean`` or ``system``.

On CPU every tensor comes from ``malloc``. glibc hands blocks of 32 MiB and more (and, once
such a block is freed, smaller ones up to its size) to the kernel with ``mmap``: each is
returned to the system when freed, and the next one is faulted in and zeroed page by page. A
3D training step allocates tens of gigabytes this way; in the virtual machine this project
measures on, the kernel took about half of a 96^3 training step's CPU time, with glibc as it
is and with ``lean`` alike (``docs/benchmarks.md``, "CPU allocator"). The policies:

- ``cache``: one allocation arena for all threads, no ``mmap`` for large blocks, and up to
  1 GiB of freed memory kept at the top of the heap: freed tensors are reused, as PyTorch's
  CUDA caching allocator reuses GPU memory. Fastest (that step took 11.6 s, against 18.1 s
  with glibc as it is and 23.7 s with ``lean``); its peak was a fifth higher than glibc's.
  Suits training, where every step allocates the same shapes.
- ``lean``: glibc's mmap threshold pinned at 128 KiB: every large tensor is handed back when
  freed. Lowest peak (a fifth below ``cache`` in training, a quarter to a third in the
  search), slowest; the search's default, whose steps run children of different shapes that
  leave a cache holding blocks of the wrong size.
- ``system``: leave glibc as it is.

:func:`configure_cpu_allocator` is what the ``--cpu-allocator`` option of ``nasmed search``,
``train``, ``transfer`` and ``demo`` calls. It imports nothing heavy and should run before torch
starts its threads (the single arena only binds threads that allocate afterwards). A user's own
``MALLOC_*`` environment variables or ``GLIBC_TUNABLES`` win: the call then changes nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from enum import Enum

from nasmed.errors import ConfigError

__all__ = ["CpuAllocator", "configure_cpu_allocator", "user_malloc_settings"]

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: ``lean``: blocks from this size on are mmapped and handed back when freed.
LEAN_MMAP_THRESHOLD = 128 * 1024
#: ``cache``: freed memory at the top of the heap kept for reuse, up to this much.
CACHE_TRIM_THRESHOLD = 1 << 30
#: glibc's defaults, which ``lean`` restores after a ``cache`` in the same process.
_GLIBC_MMAP_MAX = 65536
_GLIBC_TRIM_THRESHOLD = 128 * 1024

_USER_VARIABLES = (
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_TRIM_THRESHOLD_",
)


class CpuAllocator(str, Enum):
    """The allocator policies (see the module's documentation)."""

    CACHE = "cache"
    LEAN = "lean"
    SYSTEM = "system"


def user_malloc_settings() -> list[str]:
    """The malloc settings the user made in the environment (names only)."""
    found = [name for name in _USER_VARIABLES if name in os.environ]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        found.append("GLIBC_TUNABLES")
    return found


def _settings(policy: CpuAllocator) -> list[tuple[int, int]]:
    if policy is CpuAllocator.CACHE:
        return [(_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, CACHE_TRIM_THRESHOLD)]
    if policy is CpuAllocator.LEAN:
        return [
            (_M_MMAP_MAX, _GLIBC_MMAP_MAX),
            (_M_TRIM_THRESHOLD, _GLIBC_TRIM_THRESHOLD),
            (_M_MMAP_THRESHOLD, LEAN_MMAP_THRESHOLD),
        ]
    return []


def configure_cpu_allocator(policy: CpuAllocator | str) -> bool:
    """Apply ``policy`` to this process' glibc malloc.

    The settings are process-wide; a later call replaces what an earlier one set, except that
    ``system`` restores nothing (glibc cannot go back to its dynamic threshold) and the single
    arena of ``cache`` stays.

    Args:
        policy: ``cache``, ``lean`` or ``system``.

    Returns:
        Whether anything was changed: ``False`` for ``system``, off glibc (macOS, Windows, musl),
        or when the user set malloc variables of their own.

    Raises:
        ConfigError: an unknown policy.
    """
    try:
        chosen = CpuAllocator(policy)
    except ValueError:
        raise ConfigError(f"--cpu-allocator {policy!r}: use cache, lean or system") from None
    settings = _settings(chosen)
    if not settings or not sys.platform.startswith("linux"):
        return False
    user = user_malloc_settings()
    if user:
        log.info("CPU allocator: left as set by %s", ", ".join(user))
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    applied = all([mallopt(param, value) == 1 for param, value in settings])  # each one
    log.debug("CPU allocator: %s (%s)", chosen.value, "applied" if applied else "refused")
    return applied
