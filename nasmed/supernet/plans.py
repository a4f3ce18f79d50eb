"""From architecture logits to cell plans: hard Gumbel samples, or the DARTS mixture.

Per node ``i`` with candidate sources ``0..i-1`` and ``k = space.kept(i)`` kept inputs, the
connectivity is a categorical choice over the ``C(i, k)`` subsets of sources, a subset's logit
being the sum of its members' input logits. Per kept edge, the operation is a categorical choice
over the space's ops. In *sampled* mode both choices are hard straight-through Gumbel-softmax
samples: a term's weight has the value 1 and the gradient of the soft sample. In *mixed* mode
every edge and op runs, weighted by softmax probabilities (an edge's weight is the probability
that a subset containing it is chosen).
"""

from __future__ import annotations

import functools
import itertools
from enum import Enum

import torch

from nasmed.search.gumbel import gumbel_softmax_st
from nasmed.supernet.cell import CellPlan, Term
from searchspaces import SearchSpace

__all__ = [
    "Mode",
    "edge_rows",
    "kept_probabilities",
    "mixed_plan",
    "sampled_plan",
    "subset_logits",
    "subsets",
]


class Mode(str, Enum):
    """How the supernet runs its edges."""

    SAMPLED = "sampled"
    MIXED = "mixed"


@functools.cache
def subsets(node: int, kept: int) -> tuple[tuple[int, ...], ...]:
    """All ``kept``-subsets of the sources ``0..node-1``, in lexicographic order."""
    return tuple(itertools.combinations(range(node), kept))


def edge_rows(node: int) -> slice:
    """Rows of node ``node``'s incoming edges in the logits (``space.edges()`` order)."""
    start = node * (node - 1) // 2
    return slice(start, start + node)


def _membership(node: int, kept: int, device: torch.device) -> torch.Tensor:
    """``(n_subsets, node)`` 0/1 matrix: subset s contains source j."""
    rows = subsets(node, kept)
    m = torch.zeros(len(rows), node, device=device)
    for s, members in enumerate(rows):
        m[s, list(members)] = 1.0
    return m


def subset_logits(inputs: torch.Tensor, space: SearchSpace, node: int) -> torch.Tensor:
    """Logits of node ``node``'s input subsets (``subsets(node, kept)`` order)."""
    member = _membership(node, space.kept(node), inputs.device)
    return member @ inputs[edge_rows(node)]


def kept_probabilities(inputs: torch.Tensor, space: SearchSpace) -> torch.Tensor:
    """Probability that each edge is kept, ``(E,)``, under ``softmax`` of the subset logits."""
    out = []
    for node in range(1, space.nodes + 1):
        beta = inputs[edge_rows(node)]
        k = space.kept(node)
        if k == node:
            out.append(torch.ones_like(beta))
            continue
        member = _membership(node, k, beta.device)
        p = torch.softmax(member @ beta, dim=0)
        out.append(p @ member)
    return torch.cat(out)


def sampled_plan(
    ops: torch.Tensor,
    inputs: torch.Tensor,
    space: SearchSpace,
    tau: float,
    generator: torch.Generator | None = None,
) -> CellPlan:
    """One hard sample: per node, its sampled sources, each with its sampled op.

    Noise is drawn in a fixed order (all op rows at once, then node by node), so the same
    generator state gives the same sample.
    """
    op_sample = gumbel_softmax_st(ops, tau, generator)
    op_index = op_sample.detach().argmax(dim=-1).tolist()
    plan = []
    for node in range(1, space.nodes + 1):
        rows = edge_rows(node)
        k = space.kept(node)
        if k == node:
            chosen = list(range(node))
            weights: list[torch.Tensor | None] = [None] * node
        else:
            member = _membership(node, k, inputs.device)
            y = gumbel_softmax_st(member @ inputs[rows], tau, generator)
            edge_weight = y @ member
            chosen = list(subsets(node, k)[int(y.detach().argmax())])
            weights = [edge_weight[j] for j in range(node)]
        terms = []
        for j in chosen:
            r = rows.start + j
            o = op_index[r]
            w = op_sample[r, o]
            edge_w = weights[j]
            if edge_w is not None:
                w = edge_w * w
            terms.append(Term(j, space.ops[o], w))
        plan.append(tuple(terms))
    return tuple(plan)


def mixed_plan(ops: torch.Tensor, inputs: torch.Tensor, space: SearchSpace) -> CellPlan:
    """The DARTS relaxation: every edge and op, weighted by probabilities (cells skip zero)."""
    alpha = torch.softmax(ops, dim=-1)
    keep = kept_probabilities(inputs, space)
    plan = []
    for node in range(1, space.nodes + 1):
        rows = edge_rows(node)
        terms: list[Term] = []
        for j in range(node):
            r = rows.start + j
            terms.extend(Term(j, name, keep[r] * alpha[r, o]) for o, name in enumerate(space.ops))
        plan.append(tuple(terms))
    return tuple(plan)
