"""Load weight files safely: tensors and plain values only, finite, with one-line errors.

Every ``model.pt``, checkpoint and pretrained file nasmed reads goes through
:func:`load_weights_file`, which calls ``torch.load(weights_only=True)``. A file holding pickled
Python objects (a foreign or malicious file) is refused with one line that names it; nasmed
never offers to load such a file any other way. :func:`check_finite` refuses weights holding
NaN or infinite values, which would otherwise predict all background without a word.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from nasmed.errors import RunDirError

__all__ = ["check_finite", "load_weights_file"]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_weights_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with user errors as one line.

    Raises:
        RunDirError: the file is not a PyTorch file, is truncated, or holds pickled objects
            other than tensors and plain values.
    """
    p = Path(path)
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise RunDirError(
                f"{p}: not loadable: not a PyTorch weights file, truncated or corrupt "
                f"({_first_line(exc)})"
            ) from None
        # torch's own message advises weights_only=False: never pass that on.
        raise RunDirError(
            f"{p}: not loadable: it holds pickled Python objects, not only tensors and plain "
            "values "
            "(nasmed reads only tensors and plain values from weight files; was it "
            "written by nasmed?)"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, EOFError) and exc.errno is not None:
            raise  # the file system's refusal: the CLI names the path
        raise RunDirError(
            f"{p}: not loadable: not a PyTorch weights file, truncated or corrupt "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


def check_finite(state: Any, path: str | os.PathLike[str]) -> None:
    """Refuse weights (a state dict, or a checkpoint holding some) with NaN or infinite values.

    Raises:
        RunDirError: naming the file and the first non-finite tensor.
    """
    for name, t in _tensors(state):
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise RunDirError(
                f"{path}: tensor {name!r} holds NaN or infinite values (the training "
                "diverged, or the file is damaged); retrain, e.g. with a lower --lr"
            )
