"""Measured costs: the time and activation memory of an operation on this device, cached.

Declared FLOPs (:func:`~nasmed.ops.op_cost`) do not predict time: at 32^3, 16 channels on a CPU a
depthwise-separable op runs slower than a 3x3x3 conv with a tenth of its FLOPs. A profile holds,
per operation, channel count and shape, the median seconds of one forward + backward pass
(batch 1 unless given) and the bytes of the tensors autograd saves for the backward pass
(counted with ``torch.autograd.graph.saved_tensors_hooks``, the same on every device; on CUDA the
peak allocation above the inputs is recorded too).

Profiles are cached as JSON in ``$NASMED_CACHE`` (default ``~/.cache/nasmed``) or a given
folder, in ``op-profile.json``, keyed by device (model name, CPU threads), dtype and torch
version, so a measurement is made once per machine. No library measures per-op latency of a
supernet's candidate set (torch.utils.benchmark times one statement; its numbers are what this
module stores), hence this module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from decathlon.fsutil import atomic_write_json
from nasmed.ops.registry import create_op

__all__ = [
    "PROFILE_FILE",
    "Measure",
    "ProfileCache",
    "SavedTensors",
    "cache_dir",
    "device_key",
    "measure",
    "measure_op",
]

log = logging.getLogger(__name__)

PROFILE_FILE = "op-profile.json"


@dataclass(frozen=True)
class Measure:
    """One measurement.

    Attributes:
        seconds: median seconds of a forward + backward pass.
        saved_bytes: bytes of the tensors saved for the backward pass (unique storages).
        peak_bytes: CUDA only: peak allocated bytes during the pass above what was allocated
            before it (0 on CPU).
    """

    seconds: float
    saved_bytes: float
    peak_bytes: float = 0.0


def cache_dir(folder: str | os.PathLike[str] | None = None) -> Path:
    """``folder``, else ``$NASMED_CACHE``, else ``~/.cache/nasmed``."""
    if folder is not None:
        return Path(folder)
    return Path(os.environ.get("NASMED_CACHE") or Path.home() / ".cache" / "nasmed")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_key(device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """What a profile is valid for: device model (CPU: and thread count), dtype, torch version."""
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = f"{_cpu_name()} x{torch.get_num_threads()} threads"
    return f"{dev.type}:{name}|{str(dtype).removeprefix('torch.')}|torch {torch.__version__}"


class SavedTensors:
    """Context manager recording the bytes of every storage autograd saves for the backward pass.

    >>> with SavedTensors() as saved:
    ...     loss = net(x).sum()
    >>> saved.bytes      # unique storages, parameters included unless listed in ``skip``
    """

    def __init__(self, skip: set[tuple[int, int]] | None = None) -> None:
        self.saved: dict[tuple[int, int], int] = {}
        self.skip = skip or set()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
        except RuntimeError:  # tensors without storage (e.g. sparse)
            return t
        key = (storage.data_ptr(), storage.nbytes())
        if key not in self.skip:
            self.saved[key] = key[1]
        return t

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    @property
    def bytes(self) -> int:
        """Bytes of the unique storages saved so far."""
        return sum(self.saved.values())


def measure(
    module: torch.nn.Module,
    shape: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 3,
    forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> Measure:
    """Time ``repeats`` forward + backward passes of ``module`` on a random input of ``shape``.

    Args:
        module: the module (moved to ``device`` and ``dtype``, put in training mode).
        shape: the input's full shape ``(B, C, *spatial)``.
        device: where to run.
        dtype: parameter and input dtype.
        repeats: timed passes after one warm-up pass; the median is kept.
        forward: how to call the module (default ``module(x)``).
    """
    with torch.enable_grad():  # also when asked from inside a no_grad block
        return _measure(
            module, shape, dev=torch.device(device), dtype=dtype, repeats=repeats, forward=forward
        )


def _measure(
    module: torch.nn.Module,
    shape: Sequence[int],
    *,
    dev: torch.device,
    dtype: torch.dtype,
    repeats: int,
    forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None,
) -> Measure:
    module = module.to(dev, dtype).train()
    x = torch.randn(*shape, device=dev, dtype=dtype, requires_grad=True)
    call = forward or (lambda m, t: m(t))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with SavedTensors() as saved:
        out = call(module, x)
    _backward(out)
    times, peak = [], 0.0
    for _ in range(max(1, repeats)):
        module.zero_grad(set_to_none=True)
        x.grad = None
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        sync()
        start = time.perf_counter()
        _backward(call(module, x))
        sync()
        times.append(time.perf_counter() - start)
        if dev.type == "cuda":
            peak = max(peak, float(torch.cuda.max_memory_allocated(dev) - base))
    return Measure(statistics.median(times), float(saved.bytes), peak)


def _backward(out: torch.Tensor | tuple[torch.Tensor, ...]) -> None:
    outs = out if isinstance(out, tuple) else (out,)
    total = sum((o.float().mean() for o in outs), torch.zeros((), device=outs[0].device))
    if total.requires_grad:
        total.backward()


def measure_op(
    name: str,
    spatial_dims: int,
    channels: int,
    size: Sequence[int],
    *,
    batch: int = 1,
    bare: bool = False,
    norm: str = "instance",
    act: str = "leakyrelu",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 3,
) -> Measure:
    """Measure the candidate op ``name`` (``channels`` in and out) on ``size`` voxels."""
    if len(size) != spatial_dims:
        raise ValueError(f"size {list(size)} is not {spatial_dims}-D")
    op = create_op(
        name,
        spatial_dims,
        in_channels=channels,
        out_channels=channels,
        norm=norm,
        act=act,
        bare=bare,
    )
    return measure(op, (batch, channels, *size), device=device, dtype=dtype, repeats=repeats)


class ProfileCache:
    """Measurements of one device key, read from and written to ``folder/op-profile.json``.

    >>> cache = ProfileCache(device_key("cpu"))
    >>> m = cache.get("op conv3 c16 32x32x32", lambda: measure_op("conv3", 3, 16, (32,) * 3))
    >>> cache.save()
    """

    def __init__(self, key: str, folder: str | os.PathLike[str] | None = None) -> None:
        self.key = key
        self.path = cache_dir(folder) / PROFILE_FILE
        self.entries: dict[str, Measure] = {}
        self._dirty = False
        data = self._read()
        for name, value in data.get(key, {}).items():
            try:
                self.entries[name] = Measure(**value)
            except TypeError:
                log.warning("%s: ignoring malformed entry %r", self.path, name)

    def _read(self) -> dict[str, dict[str, dict[str, float]]]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: unreadable profile cache; measuring again", self.path)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, name: str, make: Callable[[], Measure] | None = None) -> Measure | None:
        """The cached measurement ``name``, measuring it with ``make`` when missing."""
        if name not in self.entries and make is not None:
            value = make()
            if not all(math.isfinite(v) for v in asdict(value).values()):
                raise ValueError(f"measurement {name!r} is not finite: {value}")
            self.entries[name] = value
            self._dirty = True
            log.debug("measured %s: %s", name, value)
        return self.entries.get(name)

    def save(self) -> None:
        """Write the new measurements (merged with what another process wrote meanwhile)."""
        if not self._dirty:
            return
        data = self._read()
        mine = data.setdefault(self.key, {})
        mine.update({name: asdict(m) for name, m in self.entries.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, data)
        self._dirty = False
