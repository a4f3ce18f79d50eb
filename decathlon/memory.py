"""Refuse work that cannot fit in memory before allocating it, saying how much it would need.

A patch of 2048^3, a synthetic shape of 30000^3 or a 1024^3 prediction would otherwise run for
minutes and end in an allocation traceback (or the kernel's OOM killer). Each stage estimates
what it will hold at once with a simple, documented formula (bytes of its arrays plus, for a
network, :func:`decathlon.plan.estimate_memory_mb`'s activations per voxel) and calls
:func:`check_memory` against what the machine has available: ``MemAvailable`` of
``/proc/meminfo`` (psutil's figure when installed; the free pages otherwise) for the CPU, free
memory of the device for CUDA. The estimates are deliberately rough lower bounds: they refuse
the impossible, not the tight.

``NASMED_MEMORY_LIMIT`` overrides the available amount (``64G``, ``512M``, bytes) or turns the
check off (``off``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from decathlon.errors import DecathlonError

__all__ = ["MEMORY_ENV", "MemoryTooSmallError", "available_bytes", "check_memory", "format_bytes"]

MEMORY_ENV = "NASMED_MEMORY_LIMIT"

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class MemoryTooSmallError(DecathlonError):
    """The work would need more memory than the machine (or ``NASMED_MEMORY_LIMIT``) has."""


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``320 MiB``, ``2.1e+04 TiB``..."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1e4 else f"{value:.2g} {unit}"
    return f"{n / 2**10:.3g} KiB"


def _parse_limit(text: str) -> int | None:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    if t in ("OFF", "NONE", "0"):
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*([KMGT]?)", t)
    if not m:
        raise DecathlonError(f"${MEMORY_ENV}={text!r}: expected an amount such as 64G or 'off'")
    return int(float(m[1]) * _UNITS[m[2]])


def _cpu_available() -> int:
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def available_bytes(device: str = "cpu") -> int | None:
    """Bytes available for new allocations on ``device`` (``None``: the check is off).

    Raises:
        DecathlonError: ``NASMED_MEMORY_LIMIT`` is not an amount.
    """
    env = os.environ.get(MEMORY_ENV)
    if env is not None and env.strip():
        return _parse_limit(env)
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return _cpu_available()


def check_memory(need_bytes: float, what: str, hint: str, device: str = "cpu") -> None:
    """Refuse when ``need_bytes`` exceeds what ``device`` has available.

    Args:
        need_bytes: the estimate.
        what: what needs it, e.g. ``"--patch 2048 2048 2048 (batch 2)"``.
        hint: what to change, e.g. ``"use a smaller --patch"``.
        device: ``"cpu"`` or a CUDA device.

    Raises:
        MemoryTooSmallError: one line naming ``what``, both amounts and ``hint``.
    """
    available = available_bytes(device)
    if available is None or need_bytes <= available:
        return
    raise MemoryTooSmallError(
        f"{what} needs about {format_bytes(need_bytes)} of memory, but {format_bytes(available)} "
        f"are available on {device}; {hint} (or set {MEMORY_ENV} to override this estimate)"
    )
