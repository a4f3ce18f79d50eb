"""The derived network: the child of a genotype, with its choices fixed.

Built from the same cells and operations as the supernet (:class:`~nasmed.supernet.CellNetwork`),
holding only the chosen operation of each kept edge, so a sampled child of the search and the
derived network of the same genotype run the same modules and cost the same. Module names match
the supernet's, so a supernet's weights for that child load into it (``strict=False``; not
for the macro choices' widths, whose supernet holds the widest kernels).

The genotype's macro choices (``strides`` per encoder level, ``widths`` per level; missing: the
plan's defaults) are built in exactly: a level with stride ``(2, 2, 1)`` keeps the last axis's
resolution, a level with width 0.5 has half the space's channels there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import searchspaces
from nasmed.errors import GenotypeError
from nasmed.genotype import Genotype, check_space, genotype_space
from nasmed.supernet.network import CellNetwork
from nasmed.supernet.supernet import genotype_plans
from searchspaces import Layer, SearchSpace, SpaceError

__all__ = ["DerivedNet", "build_network", "genotype_plans"]


class DerivedNet(nn.Module):
    """The network of ``genotype`` in ``space``.

    Args:
        genotype: the architecture (checked against ``space``: name, hash, structure).
        space: its search space.
        in_channels: image channels.
        out_channels: classes.
        width: channel multiplier (e.g. 2.0 to retrain wider, as DiNTS does).
        deep_supervision: in training mode return ``(full, level 1, level 2, ...)`` logits.
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        genotype: Genotype,
        space: SearchSpace,
        in_channels: int,
        out_channels: int,
        *,
        width: float = 1.0,
        deep_supervision: bool = False,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        check_space(genotype, space)
        self.genotype = genotype
        self.space = space

        def edge_ops(layer: Layer) -> dict[tuple[int, int], list[str]]:
            return {edge: [op] for edge, op in genotype.cell(layer.key).edges().items()}

        self.net = CellNetwork(
            space,
            in_channels,
            out_channels,
            edge_ops,
            width=width,
            spatial_dims=spatial_dims,
            deep_supervision=deep_supervision,
            strides=genotype.level_strides(space, spatial_dims),
            widths=genotype.level_widths(space),
        )
        self._plans = genotype_plans(genotype)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self.net.forward_plans(x, self._plans)


def build_network(
    genotype: Genotype,
    in_channels: int,
    out_channels: int,
    *,
    space: SearchSpace | None = None,
    **kw: Any,
) -> DerivedNet:
    """The derived network of ``genotype`` in its space (:func:`nasmed.genotype.genotype_space`:
    the embedded definition of a space file, else the shipped space of its name).

    Args:
        genotype: the architecture.
        in_channels: image channels.
        out_channels: classes.
        space: the space to use instead of the genotype's own (loaded by the caller).
        **kw: ``width``, ``deep_supervision``, ``spatial_dims`` of :class:`DerivedNet`.

    Raises:
        GenotypeError: the space changed since the genotype was made (hash mismatch).
        SpaceError: the space is unknown (not shipped, not embedded).
    """
    if space is None:
        space = genotype_space(genotype)
        if genotype.space_def is None and genotype.space_hash != space.content_hash():
            same = [n for n in searchspaces.list() if _hash(n) == genotype.space_hash]
            if same:
                raise GenotypeError(
                    f"search space {space.name!r} changed since the genotype was made (content "
                    f"hash {space.content_hash()[:12]} != {genotype.space_hash[:12]}); the shipped "
                    f'space {same[0]!r} has the genotype\'s hash: set its "space" to {same[0]!r}'
                )
    return DerivedNet(genotype, space, in_channels, out_channels, **kw)


def _hash(name: str) -> str:
    try:
        return searchspaces.load(name).content_hash()
    except SpaceError:
        return ""
