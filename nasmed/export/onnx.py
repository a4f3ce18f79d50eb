"""``nasmed export onnx RUN_DIR``: the trained network as ONNX, checked in onnxruntime.

Exported with PyTorch's TorchScript-based ONNX exporter (``torch.onnx.export(dynamo=False)``:
the dynamo exporter needs onnxscript, which the project does not install) with dynamic batch and
spatial axes (input ``image`` ``(B, C, X, Y, Z)``, output ``logits`` ``(B, K, X, Y, Z)``), then run
in onnxruntime on CPU against PyTorch (:mod:`nasmed.export.check`). ``model.onnx.json`` beside the
file records the opset, the tolerance and the measured difference. An operation the requested
opset cannot express is a one-line :class:`ConfigError`, and nothing is written.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasmed.errors import ConfigError
from nasmed.export.check import check_shapes, compare_outputs
from nasmed.export.deps import require
from nasmed.export.staging import write_with_sidecar
from nasmed.models.spec import load_model

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "ONNX_FILE",
    "OUTPUT_NAME",
    "export_onnx",
    "module_to_onnx",
    "onnx_session",
]

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
ONNX_FILE = "model.onnx"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
_AXES = {0: "batch", 2: "x", 3: "y", 4: "z"}


def _opset_range() -> tuple[int, int]:
    from torch.onnx import _constants

    return int(_constants.ONNX_MIN_OPSET), int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)


def module_to_onnx(net: nn.Module, example: torch.Tensor, *, opset: int, what: str) -> bytes:
    """``net`` (eval mode) as ONNX bytes with dynamic batch and spatial axes.

    Raises:
        ConfigError: the opset is outside the exporter's range, or cannot express an operation.
    """
    low, high = _opset_range()
    if not low <= opset <= high:
        raise ConfigError(f"--opset {opset}: the ONNX exporter supports opsets {low}..{high}")
    require("onnx", "ONNX export")
    from torch.onnx.errors import OnnxExporterError

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (example,),
                buf,  # type: ignore[arg-type]  # a file object works too
                opset_version=opset,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: _AXES, OUTPUT_NAME: _AXES},
            )
    except (OnnxExporterError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"{what}: ONNX opset {opset} cannot express the network ({reason}); try a newer "
            f"--opset (up to {high})"
        ) from None
    return buf.getvalue()


def onnx_session(model: bytes | str | os.PathLike[str], threads: int | None = None) -> Any:
    """An onnxruntime CPU session of ``model`` (bytes or a file)."""
    ort = require("onnxruntime", "the onnxruntime backend")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def export_onnx(
    run_dir: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export the trained network of ``run_dir`` to ``out`` (default ``RUN_DIR/model.onnx``).

    Raises:
        RunDirError: not a finished run folder (no ``model.json`` or weights).
        ConfigError: the opset cannot express the network, onnx/onnxruntime are missing, or the
            exported model differs from PyTorch beyond the tolerance.
    """
    spec, net = load_model(run_dir)
    target = Path(out) if out is not None else Path(run_dir) / ONNX_FILE
    what = f"{Path(run_dir) / 'model.json'}"
    shapes = check_shapes(spec.in_channels, spec.patch)
    example = torch.zeros(shapes[0])
    data = module_to_onnx(net, example, opset=opset, what=what)
    import onnx

    onnx.checker.check_model(onnx.load_from_string(data))
    session = onnx_session(data)

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {INPUT_NAME: x})[0])

    report = compare_outputs(net, run, shapes, what=f"{what} (onnxruntime)")
    import onnxruntime

    meta = {
        "format": "onnx",
        "file": target.name,
        "opset": opset,
        "input": {"name": INPUT_NAME, "shape": ["batch", spec.in_channels, "x", "y", "z"]},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", spec.out_channels, "x", "y", "z"]},
        "patch": list(spec.patch),
        "arch": spec.arch,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        **report,
    }
    write_with_sidecar(target, data, meta)
    log.info("%s: opset %d, max |diff| %.2e vs PyTorch", target, opset, report["max_abs_diff"])
    return target
