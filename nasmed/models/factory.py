"""One entry point for every network: ``build_model("unet" | "dynunet" | genotype.json, ...)``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from nasmed.errors import ConfigError, GenotypeError
from nasmed.genotype import Genotype, genotype_space
from nasmed.models.names import BASELINES
from nasmed.models.nnunet import is_nnunet_arch, nnunet_divisor, parse_nnunet_arch

__all__ = ["BASELINES", "MAX_WIDTH", "build_model", "check_patch", "load_arch", "patch_divisor"]


Arch = str | os.PathLike[str] | Genotype

MAX_WIDTH = 8.0  # channel multiplier beyond which a network no longer fits any machine


def load_arch(arch: Arch) -> str | Genotype:
    """``"unet"``, ``"dynunet"`` or the :class:`Genotype` that ``arch`` names.

    ``arch`` may be a baseline name, ``nnunet:PLANS.json:CONFIG`` (nnU-Net v2's network of that
    plans configuration, :mod:`nasmed.models.nnunet`), a ``genotype.json`` path, a folder holding
    one (a search's run folder), or a :class:`Genotype`.

    Raises:
        GenotypeError: the file does not exist or is not a valid genotype.
    """
    if isinstance(arch, Genotype):
        return arch
    text = str(arch)
    if text in BASELINES:
        return text
    if is_nnunet_arch(text):
        return parse_nnunet_arch(text)
    path = Path(text)
    if path.is_dir():
        path = path / "genotype.json"
    if not path.is_file():
        raise GenotypeError(
            f"{path}: --arch is neither {' nor '.join(BASELINES)} nor an existing genotype.json"
        )
    return Genotype.load(path)


def patch_divisor(arch: str | Genotype) -> int:
    """Every patch side must be a multiple of this for ``arch``.

    A genotype's space gives it (``stem_stride * 2**levels``); ``unet`` needs 16; ``dynunet``
    adapts to the patch (16 is always safe).
    """
    if isinstance(arch, Genotype):
        return genotype_space(arch).divisor
    if is_nnunet_arch(arch):
        return nnunet_divisor(arch)
    return 16


def check_patch(arch: str | Genotype, patch: Sequence[int]) -> tuple[int, int, int]:
    """``patch`` as a 3-tuple, or a :class:`ConfigError` naming the nearest patch that fits."""
    sides = tuple(int(p) for p in patch)
    d = patch_divisor(arch)
    if len(sides) != 3 or min(sides) < d or any(s % d for s in sides):
        nearest = [max(d, (s // d) * d) for s in sides]
        name = arch if isinstance(arch, str) else f"genotype of space {arch.space!r}"
        raise ConfigError(
            f"patch {list(sides)} does not fit {name}: every side must be a positive multiple of "
            f"{d}; nearest valid patch: {nearest}"
        )
    return (sides[0], sides[1], sides[2])


def build_model(
    arch: Arch,
    in_channels: int,
    out_channels: int,
    *,
    width: float = 1.0,
    deep_supervision: bool = False,
    patch: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
) -> nn.Module:
    """Build a segmentation network mapping ``(B, in_channels, *patch)`` to ``(B, out_channels,
    *patch)`` logits.

    Args:
        arch: ``"unet"``, ``"dynunet"``, ``nnunet:PLANS.json:CONFIG``, a ``genotype.json`` (or
            folder holding one), or a :class:`Genotype`.
        in_channels: image channels (modalities).
        out_channels: classes, background included.
        width: channel multiplier.
        deep_supervision: in training mode return ``(full, aux 1, ...)`` (not for ``unet``).
        patch: the training patch (``dynunet`` derives its kernels and strides from it, ``unet``
            its number of levels; default 128^3).
        spacing: the voxel spacing the network sees (``dynunet``; default isotropic).

    Raises:
        GenotypeError: the genotype is unreadable, from an unknown space, or its space changed.
        ConfigError: an impossible setting (width, channels, deep supervision for ``unet``).
    """
    if in_channels < 1 or out_channels < 1:
        raise ConfigError(f"channels must be >= 1 (in {in_channels}, out {out_channels})")
    if not 0 < width <= MAX_WIDTH:
        raise ConfigError(f"--width must be in (0, {MAX_WIDTH:g}], got {width:g}")
    resolved = load_arch(arch)
    if isinstance(resolved, Genotype):
        from nasmed.models.derived import build_network

        return build_network(
            resolved, in_channels, out_channels, width=width, deep_supervision=deep_supervision
        )
    if is_nnunet_arch(resolved):
        from nasmed.models.nnunet import make_nnunet

        if width != 1.0:
            raise ConfigError(f"--arch {resolved}: --width is fixed by the plans (leave it 1)")
        return make_nnunet(resolved, in_channels, out_channels, deep_supervision=deep_supervision)
    if resolved == "unet":
        from nasmed.models.baselines import make_unet

        return make_unet(
            in_channels,
            out_channels,
            width=width,
            deep_supervision=deep_supervision,
            patch=tuple(patch) if patch is not None else None,
        )
    from nasmed.models.baselines import make_dynunet

    return make_dynunet(
        in_channels,
        out_channels,
        patch=tuple(patch) if patch is not None else (128, 128, 128),
        spacing=tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0),
        width=width,
        deep_supervision=deep_supervision,
    )
