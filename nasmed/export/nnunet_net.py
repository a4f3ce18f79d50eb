"""``NasmedNnUNet``: a genotype's derived network as a class that nnU-Net v2's plans can name.

A plans configuration names it in ``architecture.network_class_name``
(``"nasmed.export.nnunet_net.NasmedNnUNet"``); nnU-Net's
``get_network_from_plans`` locates it, calls ``NasmedNnUNet(input_channels=..., num_classes=...,
**arch_kwargs)`` and toggles deep supervision through ``network.decoder.deep_supervision``, as its
trainer does for its own U-Nets. ``arch_kwargs`` carry the genotype as plain JSON, the pooling
``strides`` (nnU-Net derives its deep-supervision scales and ``pool_op_kernel_sizes`` from them,
so they must be the network's real strides: one ``[1, 1, 1]`` then one ``[2, 2, 2]`` per
stride-2 stage) and ``conv_op`` (listed in ``_kw_requires_import``; it gives the spatial dims).

With deep supervision on, the forward returns a list highest resolution first, one output per
stage but the lowest, exactly nnU-Net's ``1 / cumprod(strides)[:-1]`` scales. The
:class:`~nasmed.supernet.network.CellNetwork` computes the heads of decoder levels ``1..L-1``
(``0..L-1`` below a stride-2 stem) in every forward; the outputs are collected with forward hooks
(the network is shared with the search and exposes no per-level outputs; hooks avoid duplicating
its forward).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nasmed.errors import ConfigError
from nasmed.genotype import Genotype, genotype_space
from nasmed.models.derived import build_network

__all__ = ["NNUNET_CLASS_NAME", "NasmedNnUNet", "genotype_strides"]

NNUNET_CLASS_NAME = "nasmed.export.nnunet_net.NasmedNnUNet"


def genotype_strides(genotype: Genotype, spatial_dims: int = 3) -> list[list[int]]:
    """nnU-Net's per-stage strides of ``genotype``'s network: ``[1]*d``, ``[2]*d`` for a
    stride-2 stem, then one entry per level: its chosen per-axis strides (macro choices; the
    default ``[2]*d``)."""
    space = genotype_space(genotype)
    stem = [[2] * spatial_dims] if space.stem_stride == 2 else []
    levels = [list(s) for s in genotype.level_strides(space, spatial_dims)]
    return [[1] * spatial_dims, *stem, *levels]


class _Decoder(nn.Module):
    """Holds the switch nnU-Net's trainer sets (``network.decoder.deep_supervision``)."""

    def __init__(self, deep_supervision: bool) -> None:
        super().__init__()
        self.deep_supervision = deep_supervision


class NasmedNnUNet(nn.Module):
    """The derived network of a genotype, built the way nnU-Net v2 builds its networks.

    Args:
        input_channels: image channels (given by nnU-Net).
        num_classes: segmentation heads (given by nnU-Net).
        genotype: the genotype's plain-JSON form (``genotype.json`` content).
        strides: per-stage strides from the plans; must equal :func:`genotype_strides`.
        conv_op: ``torch.nn.Conv3d`` or ``Conv2d`` (nnU-Net imports it from its dotted name).
        width: channel multiplier.
        deep_supervision: return the list of scales (nnU-Net sets this per phase).

    Raises:
        GenotypeError / SpaceError: the genotype is invalid or of an unknown space.
        ConfigError: ``strides`` do not match the genotype's network.
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        genotype: dict[str, Any],
        strides: Sequence[Sequence[int]],
        conv_op: type[nn.Module] = nn.Conv3d,
        width: float = 1.0,
        deep_supervision: bool = False,
    ) -> None:
        super().__init__()
        spatial_dims = 2 if conv_op is nn.Conv2d else 3
        geno = Genotype.from_dict(genotype, source="plans arch_kwargs.genotype")
        expected = genotype_strides(geno, spatial_dims)
        given = [[int(s) for s in stage] for stage in strides]
        if given != expected:
            raise ConfigError(
                f"plans arch_kwargs.strides {given} do not match the genotype's network "
                f"(space {geno.space!r}: {expected}); export the plans with `nasmed export nnunet`"
            )
        self.strides = given
        self.net = build_network(
            geno,
            input_channels,
            num_classes,
            width=width,
            deep_supervision=True,
            spatial_dims=spatial_dims,
        )
        # The derived network's own deep-supervision heads (levels 0..L-1 below a stride-2
        # stem, else 1..L-1) run in every mode; nnU-Net also validates with the list, so their
        # outputs are captured by hooks instead of relying on the training-mode tuple.
        self.decoder = _Decoder(deep_supervision)
        self._captured: dict[int, torch.Tensor] = {}
        for level, aux in self.net.net.aux_heads.items():
            aux.register_forward_hook(self._capture(int(level)))

    def _capture(self, level: int) -> Any:
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            self._captured[level] = out

        return hook

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self._captured = {}
        out = self.net(x)
        full = out[0] if isinstance(out, tuple) else out
        if not self.decoder.deep_supervision:
            return full
        outputs = [full, *(self._captured[level] for level in sorted(self._captured))]
        self._captured = {}
        return outputs
