"""``transfer(arch, target_task_dir, run_dir, weights=...)``: reuse an architecture and its weights.

The network is rebuilt for the target task's channels and classes; every tensor of ``weights``
whose name and shape match the new network is loaded, the rest keeps its fresh initialisation
(the stem sees another number of modalities and the head another number of classes, so they are
re-initialised). ``RUN_DIR/transfer.json`` lists the transferred, skipped (shape differs, or not in
the new network) and new tensors. The encoder can be frozen for the first epochs; then the whole
network is fine-tuned with the trainer (``nasmed train``'s files and resume apply).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from decathlon.fsutil import atomic_write_json
from nasmed.errors import ConfigError, RunDirError
from nasmed.genotype import Genotype
from nasmed.models.baselines import encoder_parameter_names
from nasmed.models.spec import WEIGHTS_FILE
from nasmed.train.api import _run

__all__ = ["load_weights", "match_state", "transfer"]

log = logging.getLogger(__name__)


def load_weights(weights: str | os.PathLike[str]) -> tuple[Path, dict[str, torch.Tensor]]:
    """A state dict from ``model.pt``, a run folder holding one, or a checkpoint with ``model``.

    Raises:
        RunDirError: missing or unloadable file, or not a state dict.
    """
    p = Path(weights)
    if p.is_dir():
        p = p / WEIGHTS_FILE
    if not p.is_file():
        raise RunDirError(f"{p}: weights file not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunDirError(f"{p}: not loadable with weights_only ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunDirError(f"{p}: not a state dict of tensors")
    return p, state


def match_state(
    model: nn.Module, state: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``state`` into what loads into ``model`` (same name and shape) and a report."""
    own = model.state_dict()
    loadable = {
        k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)
    }
    report = {
        "transferred": sorted(loadable),
        "skipped_shape": sorted(
            k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)
        ),
        "skipped_missing": sorted(k for k in state if k not in own),
        "initialised": sorted(k for k in own if k not in loadable),
    }
    return loadable, report


def transfer(
    arch_genotype: str | os.PathLike[str] | Genotype,
    target_task_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | None = None,
    freeze_encoder_epochs: int = 0,
    epochs: int,
    **train_kwargs: Any,
) -> Path:
    """Rebuild ``arch_genotype`` for ``target_task_dir``, load matching weights, fine-tune.

    Args:
        arch_genotype: a ``genotype.json`` (or ``"unet"`` / ``"dynunet"``).
        target_task_dir: the target task.
        run_dir: the new run folder.
        weights: a ``model.pt`` or a run folder (none: train from scratch, nothing transferred).
        freeze_encoder_epochs: keep the transferred encoder fixed for this many epochs.
        epochs: fine-tuning epochs.
        **train_kwargs: the other settings of :func:`nasmed.train.api.train`.

    Returns:
        ``run_dir``; ``transfer.json`` there lists what was transferred.

    Raises:
        RunDirError: unreadable weights. ConfigError: no tensor of ``weights`` fits the network.
        And everything :func:`~nasmed.train.api.train` raises.
    """
    source: Path | None = None
    state: dict[str, torch.Tensor] = {}
    if weights is not None:
        source, state = load_weights(weights)  # before anything is written
    if freeze_encoder_epochs < 0:
        raise ConfigError(f"--freeze-encoder-epochs must be >= 0, got {freeze_encoder_epochs}")

    def prepare(model: nn.Module, run: Path) -> list[str]:
        frozen: list[str] = []
        report: dict[str, Any] = {"weights": str(source) if source else None}
        if state:
            loadable, matched = match_state(model, state)
            if not loadable:
                raise ConfigError(
                    f"{source}: no tensor matches the network of {arch_genotype} by name and "
                    "shape; are these weights of this architecture?"
                )
            model.load_state_dict(loadable, strict=False)
            report.update(matched)
            encoder = set(encoder_parameter_names(model))
            frozen = [n for n in loadable if n in encoder]
            log.info(
                "transferred %d of %d tensors (%d skipped: shape, %d not in the network)",
                len(loadable),
                len(state),
                len(matched["skipped_shape"]),
                len(matched["skipped_missing"]),
            )
        report["frozen_for_epochs"] = freeze_encoder_epochs if frozen else 0
        report["frozen"] = sorted(frozen)
        atomic_write_json(run / "transfer.json", report)
        return frozen

    prep: Callable[[nn.Module, Path], list[str]] = prepare
    return _run(
        "transfer",
        target_task_dir,
        arch_genotype,
        run_dir,
        epochs=epochs,
        freeze_epochs=freeze_encoder_epochs,
        prepare=prep,
        extra_settings={"weights": str(source) if source else None},
        **_train_defaults(train_kwargs),
    )


def _train_defaults(kw: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "patch": None,
        "fold": 0,
        "width": 1.0,
        "deep_supervision": False,
        "optimizer": "sgd",
        "lr": None,
        "batch_size": 2,
        "steps_per_epoch": 250,
        "val_every": 1,
        "resume": False,
        "seed": 0,
        "device": "auto",
        "work_dir": None,
        "workers": 0,
        "folds": 5,
        "progress": True,
        "on_epoch_end": None,
    }
    unknown = sorted(set(kw) - set(defaults))
    if unknown:
        raise TypeError(f"transfer() got unexpected keyword arguments {unknown}")
    return {**defaults, **kw}
