"""Baseline networks behind the same interface as :class:`~nasmed.models.derived.DerivedNet`.

- ``unet``: MONAI's residual :class:`~monai.networks.nets.UNet` (2 residual units per block,
  instance norm), channels ``16, 32, 64, 128, 256`` times ``width``: up to 4 stride-2 levels, fewer
  for small patches so the bottom keeps at least 4 voxels per side (a 16^3 patch gets 2, 32^3
  gets 3, 64^3 and up 4). Every patch side must be a multiple of 16. It has no deep supervision.
- ``dynunet``: MONAI's :class:`~monai.networks.nets.DynUNet` sized as nnU-Net v2 plans its
  ``PlainConvUNet``: kernels and strides by nnU-Net's own rule from the patch and the voxel
  spacing (:func:`dynunet_topology`: pooling stops at a 4-voxel bottleneck edge, an axis pools
  only while its spacing is under twice the finest, coarser axes get 1-voxel kernels until they
  catch up), filters ``32 * 2**level`` capped at 320 (3D), times ``width``. With deep
  supervision it returns, in training mode, a tuple of logits from every decoder level, as
  nnU-Net's decoder does (MONAI upsamples them to full resolution), highest resolution first.

Every network maps ``(B, C, *patch)`` to ``(B, K, *patch)`` logits in eval mode; with deep
supervision in training mode it returns ``(full, aux 1, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import DynUNet, UNet
from torch import nn

from nasmed.errors import ConfigError

__all__ = [
    "DYNUNET_MIN_EDGE",
    "UNET_DIVISOR",
    "DeepSupervisedDynUNet",
    "dynunet_topology",
    "encoder_parameter_names",
    "make_dynunet",
    "make_unet",
    "unet_levels",
]

UNET_DIVISOR = 16  # 4 stride-2 levels
UNET_BASE_CHANNELS = (16, 32, 64, 128, 256)
DYNUNET_MIN_EDGE = 4  # nnU-Net v2: UNet_featuremap_min_edge_length
DYNUNET_BASE_FILTERS = 32
DYNUNET_MAX_FILTERS = 320


def _scaled(channels: int, width: float) -> int:
    return max(2, round(channels * width))


def unet_levels(patch: Sequence[int] | None) -> int:
    """Stride-2 levels of ``unet`` for ``patch``: at most 4, the bottom at least 4 voxels."""
    if patch is None:
        return 4
    smallest = max(1, min(int(p) for p in patch))
    return max(1, min(4, smallest.bit_length() - 3))


def make_unet(
    in_channels: int,
    out_channels: int,
    *,
    width: float = 1.0,
    deep_supervision: bool = False,
    patch: Sequence[int] | None = None,
) -> UNet:
    """MONAI's residual UNet (channels ``16..256`` times ``width``; see :func:`unet_levels`).

    Raises:
        ConfigError: deep supervision was asked for (MONAI's UNet has none).
    """
    if deep_supervision:
        raise ConfigError("--arch unet has no deep supervision; use dynunet or a genotype")
    levels = unet_levels(patch)
    return UNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(_scaled(c, width) for c in UNET_BASE_CHANNELS[: levels + 1]),
        strides=(2,) * levels,
        num_res_units=2,
        norm="INSTANCE",
    )


def dynunet_topology(
    patch: Sequence[int],
    spacing: Sequence[float],
    *,
    min_edge: int = DYNUNET_MIN_EDGE,
    max_poolings: int | None = None,
) -> tuple[list[list[int]], list[list[int]]]:
    """nnU-Net v2's kernels and strides for ``patch`` at ``spacing``.

    The rule of nnU-Net v2's ``get_pool_and_conv_props`` (nnunetv2 2.8.1,
    ``experiment_planning/experiment_planners/network_topology.py``), applied to the given patch
    instead of one nnU-Net chose: at each level, the axes that may pool are those whose size is
    at least ``2 * min_edge`` and whose spacing is under twice the finest spacing among them; a
    single such axis pools only while its size is at least ``3 * min_edge``; no axis left ends
    the encoder. An axis's kernel becomes 3 (and stays 3) once its spacing is under twice the
    finest spacing of all axes, 1 before (anisotropy). The bottleneck's kernel is 3 everywhere.

    Args:
        patch: the patch, ``(x, y, z)``.
        spacing: its voxel spacing in the same axis order.
        min_edge: the smallest edge of the bottleneck's feature map (nnU-Net's 4).
        max_poolings: at most this many poolings per axis (``None``: no limit, as nnU-Net).

    Returns:
        ``(kernels, strides)``, one entry per level; the first stride is ``[1, 1, 1]``.

    Raises:
        ConfigError: a patch side is not divisible by the pooling applied to it, or no axis can
            be pooled at all.
    """
    sizes = [int(p) for p in patch]
    spacings = [float(s) for s in spacing]
    if len(sizes) != 3 or len(spacings) != 3 or min(sizes) < 1 or min(spacings) <= 0:
        raise ConfigError(f"dynunet: patch {list(patch)} and spacing {list(spacing)} must be 3D")
    limit = max_poolings if max_poolings is not None else 10**6
    pools = [0, 0, 0]
    kernel = [1, 1, 1]
    kernels: list[list[int]] = []
    strides: list[list[int]] = [[1, 1, 1]]
    while True:
        valid = [a for a in range(3) if sizes[a] >= 2 * min_edge]
        if not valid:
            break
        finest = min(spacings[a] for a in valid)
        valid = [a for a in valid if spacings[a] / finest < 2 and pools[a] < limit]
        if not valid or (len(valid) == 1 and sizes[valid[0]] < 3 * min_edge):
            break
        kernel = [3 if k == 3 or sp / min(spacings) < 2 else 1 for k, sp in zip(kernel, spacings)]
        stride = [2 if a in valid else 1 for a in range(3)]
        for a in valid:
            pools[a] += 1
            spacings[a] *= 2
            sizes[a] = -(-sizes[a] // 2)
        kernels.append(list(kernel))
        strides.append(stride)
    if len(strides) == 1:
        raise ConfigError(
            f"dynunet: patch {list(patch)} is too small to pool (sides < {2 * min_edge})"
        )
    bad = [a for a in range(3) if int(patch[a]) % 2 ** pools[a]]
    if bad:
        fit = [max(2**p, round(int(n) / 2**p) * 2**p) for n, p in zip(patch, pools)]
        raise ConfigError(
            f"dynunet: patch side {patch[bad[0]]} (axis {bad[0]}) is not divisible by its "
            f"{2 ** pools[bad[0]]}-fold pooling at spacing {list(spacing)}; try patch {fit}"
        )
    kernels.append([3, 3, 3])
    return kernels, strides


class DeepSupervisedDynUNet(DynUNet):
    """DynUNet whose deep-supervision output is a tuple ``(full, aux 1, ...)`` in training.

    MONAI stacks the outputs along dimension 1; the trainer's
    :class:`~nasmed.train.losses.DeepSupervisionLoss` takes a sequence.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = super().forward(x)
        if self.training and self.deep_supervision:
            return tuple(torch.unbind(out, dim=1))
        return out


def make_dynunet(
    in_channels: int,
    out_channels: int,
    *,
    patch: Sequence[int],
    spacing: Sequence[float],
    width: float = 1.0,
    deep_supervision: bool = False,
) -> DeepSupervisedDynUNet:
    """The nnU-Net-like DynUNet for ``patch`` at ``spacing`` (see :func:`dynunet_topology`)."""
    kernels, strides = dynunet_topology(patch, spacing)
    filters = [
        _scaled(min(DYNUNET_BASE_FILTERS * 2**i, DYNUNET_MAX_FILTERS), width)
        for i in range(len(strides))
    ]
    return DeepSupervisedDynUNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=filters,
        norm_name=("INSTANCE", {"affine": True}),
        deep_supervision=deep_supervision,
        deep_supr_num=max(1, len(strides) - 2),
        res_block=False,
    )


def _unet_encoder(model: UNet) -> list[str]:
    """Prefixes of MONAI UNet's encoder: each level's down block and the bottom block."""
    prefixes: list[str] = []
    block: nn.Module = model.model
    prefix = "model"
    while isinstance(block, nn.Sequential) and len(block) == 3:
        prefixes.append(f"{prefix}.0.")
        inner: nn.Module = block[1].submodule  # type: ignore[assignment]
        block, prefix = inner, f"{prefix}.1.submodule"
    prefixes.append(f"{prefix}.")
    return prefixes


def encoder_parameter_names(model: nn.Module) -> list[str]:
    """Names of the encoder's parameters (what ``transfer --freeze-encoder-epochs`` freezes).

    The encoder is everything on the contracting path: for a genotype network the stem, the
    stride-2 stem block, the fixed top levels' encoder blocks (``fixed_levels``), encoder and
    reduction cells; for ``dynunet`` the input block, the
    down-sampling blocks and the bottleneck; for ``unet`` every level's down block and the
    bottom block.
    """
    names = [n for n, _ in model.named_parameters()]
    if isinstance(model, DynUNet):
        prefixes = ["input_block.", "downsamples.", "bottleneck."]
    elif isinstance(model, UNet):
        prefixes = _unet_encoder(model)
    else:  # DerivedNet: net.stem, net.down, net.top_enc, net.cells.{encoder_*, reduction_*}
        prefixes = [
            "net.stem.", "net.down.", "net.top_enc.", "net.cells.encoder", "net.cells.reduction",
        ]  # fmt: skip
    return [n for n in names if any(n.startswith(p) for p in prefixes)]
