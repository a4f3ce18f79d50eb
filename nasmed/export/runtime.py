"""onnxruntime as the network behind :func:`nasmed.infer.predict` (``--backend onnxruntime``).

:class:`OnnxRuntimeNetwork` is a callable from a torch batch to torch logits, so MONAI's sliding
window (and nasmed's mirroring, blending and resampling back) run unchanged around an exported
``model.onnx``; only the network evaluation moves to onnxruntime's CPU provider.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasmed.errors import ConfigError, RunDirError
from nasmed.export.onnx import INPUT_NAME, ONNX_FILE, onnx_session

__all__ = ["BACKENDS", "OnnxRuntimeNetwork", "load_backend"]

BACKENDS = ("torch", "onnxruntime")


class OnnxRuntimeNetwork:
    """An ONNX segmentation network run by onnxruntime, called like a torch module.

    Args:
        path: the ``.onnx`` file (as written by :func:`nasmed.export.onnx.export_onnx`).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = Path(path)
        self.session: Any = onnx_session(self.path, threads=threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        out = self.session.run(None, {INPUT_NAME: arr})[0]
        return torch.from_numpy(np.asarray(out)).to(x.device)


def load_backend(
    run_dir: str | os.PathLike[str],
    backend: str,
    *,
    onnx_file: str | os.PathLike[str] | None = None,
    threads: int | None = None,
) -> OnnxRuntimeNetwork | None:
    """The network ``predict`` should call for ``backend``; ``None`` for ``"torch"``.

    Raises:
        ConfigError: an unknown backend. RunDirError: no exported ``model.onnx``.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return None
    path = Path(onnx_file) if onnx_file is not None else Path(run_dir) / ONNX_FILE
    if not path.is_file():
        raise RunDirError(f"{path}: no ONNX model; run `nasmed export onnx {run_dir}` first")
    return OnnxRuntimeNetwork(path, threads=threads)
