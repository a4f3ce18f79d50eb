"""Uniformly random architectures of a space (the random-search baseline)."""

from __future__ import annotations

import numpy as np

from nasmed.genotype import CellGenotype, EdgeChoice, Genotype, NodeChoice, space_record
from nasmed.supernet.plans import subsets
from searchspaces import SearchSpace

__all__ = ["sample_genotype"]


def sample_genotype(space: SearchSpace, rng: np.random.Generator | int | None = None) -> Genotype:
    """An architecture drawn uniformly from ``space``.

    Every node's kept subset is uniform over the subsets, every kept edge's op uniform over the
    space's ops, every macro choice (drawn after the cells) uniform over its options, so every
    genotype of the space is equally likely.

    Args:
        space: the search space.
        rng: a numpy generator, or a seed (recorded in the genotype).
    """
    seed = rng if isinstance(rng, int) else None
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    cells = []
    for key in space.arch_keys():
        nodes = []
        for node in range(1, space.nodes + 1):
            options = subsets(node, space.kept(node))
            chosen = options[int(gen.integers(len(options)))]
            ops = gen.integers(len(space.ops), size=len(chosen))
            nodes.append(
                NodeChoice(tuple(EdgeChoice(j, space.ops[int(o)]) for j, o in zip(chosen, ops)))
            )
        cells.append(CellGenotype(key, tuple(nodes)))
    strides = widths = None
    if space.stride_options:
        picks = gen.integers(len(space.stride_options), size=space.levels)
        strides = tuple(space.stride_options[int(i)] for i in picks)
    if space.width_options:
        picks = gen.integers(len(space.width_options), size=space.levels + 1)
        widths = tuple(float(space.width_options[int(i)]) for i in picks)
    return Genotype(
        space.name,
        space.content_hash(),
        tuple(cells),
        seed,
        {"strategy": "random"},
        strides=strides,
        widths=widths,
        space_def=space_record(space),
    )
