"""``nasmed export torchscript RUN_DIR``: the trained network traced to TorchScript.

Traced (``torch.jit.trace``) at the training patch; convolutional networks trace into graphs
that take any batch and spatial size, which the check confirms on a second shape
(:mod:`nasmed.export.check`). ``model.ts.json`` beside the file records the tolerance and the
measured difference. Load with ``torch.jit.load("model.ts")``.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from nasmed.errors import ConfigError
from nasmed.export.check import check_shapes, compare_outputs
from nasmed.export.staging import write_with_sidecar
from nasmed.models.spec import load_model

__all__ = ["TORCHSCRIPT_FILE", "export_torchscript"]

log = logging.getLogger(__name__)

TORCHSCRIPT_FILE = "model.ts"


def export_torchscript(
    run_dir: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None
) -> Path:
    """Trace the trained network of ``run_dir`` into ``out`` (default ``RUN_DIR/model.ts``).

    Raises:
        RunDirError: not a finished run folder. ConfigError: tracing failed or the traced
            module differs from the network beyond the tolerance.
    """
    spec, net = load_model(run_dir)
    target = Path(out) if out is not None else Path(run_dir) / TORCHSCRIPT_FILE
    what = f"{Path(run_dir) / 'model.json'} (TorchScript)"
    shapes = check_shapes(spec.in_channels, spec.patch)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(net, torch.zeros(shapes[0]))
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"{what}: cannot trace ({' '.join(str(exc).split())[:300]})") from None

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return traced(torch.from_numpy(x)).numpy()

    report = compare_outputs(net, run, shapes, what=what)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still works
        torch.jit.save(traced, buf)
    meta = {
        "format": "torchscript",
        "file": target.name,
        "method": "trace",
        "input_shape": ["batch", spec.in_channels, "x", "y", "z"],
        "output_shape": ["batch", spec.out_channels, "x", "y", "z"],
        "patch": list(spec.patch),
        "arch": spec.arch,
        "torch": torch.__version__,
        **report,
    }
    write_with_sidecar(target, buf.getvalue(), meta)
    log.info("%s: max |diff| %.2e vs PyTorch", target, report["max_abs_diff"])
    return target
