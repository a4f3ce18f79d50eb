"""Mixed precision as a strategy: autocast + (for float16) a gradient scaler, in one object.

``bf16`` runs under ``torch.autocast`` on CPU and CUDA and needs no scaler (bfloat16 has float32's
range); ``fp16`` is CUDA only and scales the loss (:class:`torch.amp.GradScaler`) so small
gradients do not underflow. Losses are computed in float32 by the callers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Literal

import torch

from nasmed.engine.defaults import AMP_DTYPES
from nasmed.errors import ConfigError

__all__ = ["AMP_DTYPES", "Precision", "cpu_has_native_bf16", "resolve_precision"]

log = logging.getLogger(__name__)

Mode = Literal["fp32", "bf16", "fp16"]


def resolve_precision(amp: bool | None, dtype: str, device: torch.device) -> Mode:
    """The precision of a run.

    Args:
        amp: on, off, or ``None``: on with CUDA only.
        dtype: ``auto`` (fp16 on CUDA, bf16 elsewhere), ``bf16`` or ``fp16``.
        device: where the network runs.

    Raises:
        ConfigError: an unknown dtype, or fp16 on a device other than CUDA.
    """
    if dtype not in AMP_DTYPES:
        raise ConfigError(f"--amp-dtype must be one of {', '.join(AMP_DTYPES)}, not {dtype!r}")
    on = device.type == "cuda" if amp is None else amp
    if not on:
        return "fp32"
    if dtype == "auto":
        return "fp16" if device.type == "cuda" else "bf16"
    if dtype == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"--amp-dtype fp16 needs a CUDA device (this run is on {device}); use bf16"
        )
    return "bf16" if dtype == "bf16" else "fp16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where oneDNN's bfloat16
    convolutions run about 2.5x faster than float32 ones (docs/benchmarks.md); PyTorch has no
    public query, so its oneDNN check is asked, and ``False`` when that is missing."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Precision:
    """Autocast and loss scaling of one run.

    Args:
        mode: ``fp32`` (nothing), ``bf16`` or ``fp16``.
        device: where the network runs.
    """

    def __init__(self, mode: Mode, device: torch.device) -> None:
        self.mode = mode
        self.device = device
        self.scaler = torch.amp.GradScaler("cuda", enabled=mode == "fp16")

    @property
    def enabled(self) -> bool:
        """Whether autocast is on."""
        return self.mode != "fp32"

    @property
    def dtype(self) -> torch.dtype:
        """The autocast dtype (float32 when off)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mode, torch.float32)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The forward pass' context: ``torch.autocast`` when on, nothing otherwise."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, inputs: Iterable[torch.Tensor] | None = None) -> None:
        """Backpropagate ``loss`` (scaled under fp16), only into ``inputs`` when given."""
        scaled = self.scaler.scale(loss)
        if inputs is None:
            scaled.backward()
        else:
            scaled.backward(inputs=list(inputs))

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        params: Iterable[torch.Tensor] = (),
        grad_clip: float = 0.0,
    ) -> None:
        """Unscale, clip the gradient norm of ``params`` to ``grad_clip`` (0: no clip), step."""
        if grad_clip > 0:
            self.scaler.unscale_(optimizer)
            with_grad = [p for p in params if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(with_grad, grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (empty when it is off)."""
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        if state:
            self.scaler.load_state_dict(state)
