"""Backbone checkpoints: what ``--pretrained CKPT`` loads and every classify run writes.

A backbone checkpoint is the ``backbone`` kind of :mod:`nasmed.engine.checkpoint`
(``{"schema": "nasmed.checkpoint", "version": 1, "kind": "backbone", "spec": {...}, "model": ...}``;
files of the older ``{"format": "nasmed-backbone-2d", "spec", "state_dict"}`` layout still load),
saved atomically and loadable with ``weights_only=True``. Nothing is ever downloaded (REFERENCE
§8): checkpoints come from nasmed's own runs, for example ``--pretrain-on SOURCE_TASK_DIR``.

A checkpoint of another architecture or width is refused with one line; one with another number of
input channels is adapted (the stem's kernels are averaged over the saved channels and copied to
each new channel, scaled to keep the response).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch

from nasmed.classify.backbones import BackboneSpec
from nasmed.classify.saol import Classifier
from nasmed.engine.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from nasmed.errors import ConfigError, RunDirError

__all__ = ["BACKBONE_FORMAT", "load_backbone_state", "load_pretrained", "save_backbone"]

BACKBONE_FORMAT = "nasmed-backbone-2d"
STEM_KEY = "stem.0.weight"


def save_backbone(path: str | os.PathLike[str], model: Classifier) -> Path:
    """Save ``model``'s backbone (weights and spec) to ``path``."""
    spec = model.backbone.spec
    state = {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()}
    return save_checkpoint(path, make_checkpoint("backbone", spec=asdict(spec), model=state))


def load_backbone_state(
    path: str | os.PathLike[str], spec: BackboneSpec
) -> dict[str, torch.Tensor]:
    """The backbone weights in ``path``, fitted to ``spec``.

    Raises:
        ConfigError: not a backbone checkpoint, or another architecture or width.
        RunDirError: the file is missing or unreadable.
    """
    try:
        ck = load_checkpoint(path)
    except RunDirError as exc:
        if "not a checkpoint of this run" not in str(exc):
            raise
        ck = {}
    if ck.get("kind") != "backbone" or not isinstance(ck.get("spec"), dict):
        raise ConfigError(
            f"{path}: not a nasmed 2D backbone checkpoint (expected format {BACKBONE_FORMAT!r}; "
            "use the backbone.pt of a classify run)"
        )
    try:
        saved = BackboneSpec(**ck["spec"])
    except TypeError as exc:
        raise ConfigError(f"{path}: malformed backbone spec ({exc})") from exc
    if (saved.arch, saved.width) != (spec.arch, spec.width):
        raise ConfigError(
            f"{path}: checkpoint holds a {saved.arch} of width {saved.width} but this run builds "
            f"a {spec.arch} of width {spec.width}; pass --arch {saved.arch} --width {saved.width}"
        )
    state = dict(ck["model"])
    if saved.in_channels != spec.in_channels and STEM_KEY in state:
        w = state[STEM_KEY]
        mean = w.mean(dim=1, keepdim=True) * saved.in_channels / spec.in_channels
        state[STEM_KEY] = mean.repeat(1, spec.in_channels, 1, 1)
    return state


def load_pretrained(model: Classifier, path: str | os.PathLike[str]) -> None:
    """Load the backbone checkpoint ``path`` into ``model``'s backbone (strict)."""
    state = load_backbone_state(path, model.backbone.spec)
    try:
        model.backbone.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: backbone weights do not fit ({first})") from exc
