"""``transfer(arch, target_task_dir, run_dir, TransferConfig)``: reuse an architecture, its weights.

The network is rebuilt for the target task's channels and classes; every tensor of ``weights``
whose name and shape match the new network is loaded. Convolution kernels that differ only in their
number of input channels (the layers that read the image, when the target has another number of
modalities) are adapted, as timm adapts pretrained stems: the source kernel's channels repeated
over the target's and scaled (or summed, for fewer target channels), so a target image whose
modalities all show the source's image gives the source's response. The rest keeps its fresh
initialisation (the head, which predicts another number of classes). ``RUN_DIR/transfer.json``
lists the transferred, adapted, skipped (shape differs, or not in the new network) and new tensors.
The encoder can be frozen for the first epochs; then the whole network is fine-tuned with the
trainer (``nasmed train``'s files and resume apply).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from decathlon.fsutil import atomic_write_json
from nasmed.engine.checkpoint import load_model_state
from nasmed.errors import ConfigError
from nasmed.genotype import Genotype
from nasmed.models.baselines import encoder_parameter_names
from nasmed.models.spec import WEIGHTS_FILE
from nasmed.train.config import TrainConfig
from nasmed.training import run_training

__all__ = ["TransferConfig", "adapt_input_channels", "load_weights", "match_state", "transfer"]

log = logging.getLogger(__name__)


def load_weights(weights: str | os.PathLike[str]) -> tuple[Path, dict[str, torch.Tensor]]:
    """A state dict from ``model.pt``, a run folder holding one, or any nasmed checkpoint
    (:func:`nasmed.engine.checkpoint.load_model_state`, the one loader).

    Raises:
        RunDirError: missing or unloadable file, or not a state dict.
    """
    p = Path(weights)
    if p.is_dir():
        p = p / WEIGHTS_FILE
    return p, load_model_state(p)


def adapt_input_channels(source: torch.Tensor, channels: int) -> torch.Tensor:
    """A conv kernel ``(out, c, *k)`` for ``channels`` input channels instead of ``c``.

    More target channels: source channel ``t mod c`` for target channel ``t``, divided by the
    number of target channels that share it. Fewer: target channel ``t`` sums the source channels
    ``s`` with ``s mod channels == t``. Either way, a target image whose channels all show the
    same image gets exactly the source kernel's response to that image in all its channels.
    """
    if source.dim() < 3:
        raise ValueError(f"not a conv kernel: shape {tuple(source.shape)}")
    c = source.shape[1]
    if channels >= c:
        index = torch.arange(channels) % c
        shares = torch.bincount(index, minlength=c).to(source.dtype)[index]
        view = (1, channels) + (1,) * (source.dim() - 2)
        return source[:, index] / shares.view(view)
    out = source.new_zeros((source.shape[0], channels, *source.shape[2:]))
    for s in range(c):
        out[:, s % channels] += source[:, s]
    return out


def _input_adaptable(source: torch.Tensor, target: torch.Tensor) -> bool:
    """Conv kernels that differ in their number of input channels only."""
    return (
        source.dim() >= 3
        and source.dim() == target.dim()
        and source.shape[0] == target.shape[0]
        and source.shape[2:] == target.shape[2:]
        and source.shape[1] != target.shape[1]
    )


def match_state(
    model: nn.Module, state: dict[str, torch.Tensor], *, adapt_inputs: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``state`` into what loads into ``model`` and a report.

    Tensors of the same name and shape load as they are ("transferred"); with ``adapt_inputs``,
    kernels of (non-transposed) convolutions that differ only in input channels load through
    :func:`adapt_input_channels` ("adapted"); every other tensor of another shape is left out
    ("skipped_shape").
    """
    own = model.state_dict()
    # dimension 1 of a (non-transposed) convolution's kernel is its input channels; that of a
    # transposed one is its output channels (a head's classes), which are never adapted
    kernels = {
        f"{name}.weight"
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed
    }
    loadable: dict[str, torch.Tensor] = {}
    adapted: list[str] = []
    skipped: list[str] = []
    for k, v in state.items():
        if k not in own:
            continue
        if tuple(v.shape) == tuple(own[k].shape):
            loadable[k] = v
        elif adapt_inputs and k in kernels and _input_adaptable(v, own[k]):
            loadable[k] = adapt_input_channels(v, own[k].shape[1]).to(own[k].dtype)
            adapted.append(k)
        else:
            skipped.append(k)
    report = {
        "transferred": sorted(k for k in loadable if k not in adapted),
        "adapted": sorted(adapted),
        "skipped_shape": sorted(skipped),
        "skipped_missing": sorted(k for k in state if k not in own),
        "initialised": sorted(k for k in own if k not in loadable),
    }
    return loadable, report


@dataclass(frozen=True)
class TransferConfig:
    """Settings of a transfer run.

    Attributes:
        weights: a ``model.pt`` or a run folder (``None``: train from scratch, nothing
            transferred).
        freeze_encoder_epochs: keep the transferred encoder fixed for this many epochs (adapted
            input kernels are not frozen).
        adapt_inputs: load the kernels that read the image through :func:`adapt_input_channels`
            when the target has another number of modalities (``False``: re-initialise them).
        train: the fine-tuning settings (its ``freeze_epochs`` is ``freeze_encoder_epochs``).
    """

    weights: str | os.PathLike[str] | None = None
    freeze_encoder_epochs: int = 0
    adapt_inputs: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.weights is not None:
            object.__setattr__(self, "weights", os.fspath(self.weights))
        if self.freeze_encoder_epochs < 0:
            raise ConfigError(
                f"--freeze-encoder-epochs must be >= 0, got {self.freeze_encoder_epochs}"
            )
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a TrainConfig, not {type(self.train).__name__}")


def transfer(
    arch_genotype: str | os.PathLike[str] | Genotype,
    target_task_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    config: TransferConfig | None = None,
    *,
    resume: bool = False,
    device: str = "auto",
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> Path:
    """Rebuild ``arch_genotype`` for ``target_task_dir``, load matching weights, fine-tune.

    Args:
        arch_genotype: a ``genotype.json`` (or ``"unet"`` / ``"dynunet"``).
        target_task_dir: the target task.
        run_dir: the new run folder.
        config: the settings (default ``TransferConfig()``: no weights, the training defaults).
        resume, device, work_dir, progress, on_epoch_end: as for :func:`nasmed.training.train`.

    Returns:
        ``run_dir``; ``transfer.json`` there lists what was transferred.

    Raises:
        RunDirError: unreadable weights. ConfigError: no tensor of ``weights`` fits the network.
        And everything :func:`~nasmed.training.train` raises.
    """
    config = config or TransferConfig()
    source: Path | None = None
    state: dict[str, torch.Tensor] = {}
    if config.weights is not None:
        source, state = load_weights(config.weights)  # before anything is written
    freeze_encoder_epochs, adapt_inputs = config.freeze_encoder_epochs, config.adapt_inputs

    def prepare(model: nn.Module, run: Path) -> list[str]:
        frozen: list[str] = []
        report: dict[str, Any] = {"weights": str(source) if source else None}
        if state:
            loadable, matched = match_state(model, state, adapt_inputs=adapt_inputs)
            if not loadable:
                raise ConfigError(
                    f"{source}: no tensor matches the network of {arch_genotype} by name and "
                    "shape; are these weights of this architecture?"
                )
            model.load_state_dict(loadable, strict=False)
            report.update(matched)
            encoder = set(encoder_parameter_names(model))
            frozen = [n for n in matched["transferred"] if n in encoder]
            log.info(
                "transferred %d of %d tensors, adapted %d to the input channels "
                "(%d skipped: shape, %d not in the network)",
                len(matched["transferred"]),
                len(state),
                len(matched["adapted"]),
                len(matched["skipped_shape"]),
                len(matched["skipped_missing"]),
            )
        report["frozen_for_epochs"] = freeze_encoder_epochs if frozen else 0
        report["frozen"] = sorted(frozen)
        atomic_write_json(run / "transfer.json", report)
        return frozen

    return run_training(
        "transfer",
        target_task_dir,
        arch_genotype,
        run_dir,
        config.train.replace(freeze_epochs=freeze_encoder_epochs),
        resume=resume,
        device=device,
        work_dir=work_dir,
        progress=progress,
        on_epoch_end=on_epoch_end,
        prepare=prepare,
        extra_settings={"weights": str(source) if source else None, "adapt_inputs": adapt_inputs},
    )
