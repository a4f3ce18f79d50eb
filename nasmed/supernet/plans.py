"""From architecture logits to cell plans: hard Gumbel samples, binary gates, fixed samples,
or the DARTS mixture.

Per node ``i`` with candidate sources ``0..i-1`` and ``k = space.kept(i)`` kept inputs, the
connectivity is a categorical choice over the ``C(i, k)`` subsets of sources, a subset's logit
being the sum of its members' input logits. Per kept edge, the operation is a categorical choice
over the space's ops. In *sampled* mode both choices are hard straight-through Gumbel-softmax
samples: a term's weight has the value 1 and the gradient of the soft sample. In *mixed* mode
every edge and op runs, weighted by softmax probabilities (an edge's weight is the probability
that a subset containing it is chosen).

Which ops an edge may choose (:func:`op_mask`): ``zero`` only competes on the edges of nodes
that keep every input (``space.kept(i) == i``) and have more than one (there it is the only way to
drop an edge). Where ``inputs_per_node`` already chooses the connectivity, ``zero`` would only
duplicate that choice (and it never receives a gradient of its own), and on a node's only edge
it would leave the node dead. Masked ops get the logit :data:`MASKED` (probability 0).

The estimators of the search (:mod:`nasmed.search.estimators`) use three kinds of plan:
:func:`sampled_plan` (GDAS: straight-through Gumbel weights), :func:`binary_plan`
(ProxylessNAS: two sampled candidates per choice with binary gates) and :func:`fixed_plan` of a
:class:`Choice` (REINFORCE: a hard sample without gradients, scored by :func:`log_prob`).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from nasmed.supernet.cell import CellPlan, Term
from nasmed.supernet.gumbel import gumbel_noise, gumbel_softmax_st
from searchspaces import SearchSpace

__all__ = [
    "MASKED",
    "Choice",
    "Mode",
    "binary_plan",
    "choice_entropy",
    "edge_rows",
    "fixed_plan",
    "kept_probabilities",
    "log_prob",
    "masked_ops",
    "mixed_plan",
    "op_mask",
    "sample_choice",
    "sampled_plan",
    "subset_logits",
    "subsets",
    "zero_allowed",
]


#: The logit of a masked op: finite (so entropies stay finite), far below any learnt logit.
MASKED = -1e9


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


def zero_allowed(space: SearchSpace, node: int) -> bool:
    """Whether ``zero`` competes on node ``node``'s edges (see the module docs)."""
    return space.kept(node) == node and node > 1


def op_mask(space: SearchSpace) -> np.ndarray:
    """``(E, n_ops)`` booleans: which ops each edge (``space.edges()`` order) may choose."""
    mask = np.ones((len(space.edges()), len(space.ops)), dtype=bool)
    if "zero" in space.ops:
        z = space.ops.index("zero")
        for r, (_, node) in enumerate(space.edges()):
            mask[r, z] = zero_allowed(space, node)
    return mask


def masked_ops(ops: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``ops`` logits with the disallowed entries set to :data:`MASKED` (differentiable)."""
    return ops.masked_fill(~mask, MASKED)


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


@dataclass(frozen=True)
class Choice:
    """One hard sample of a cell's choices.

    Attributes:
        ops: per edge row, the index of its op (rows of unkept edges included).
        subsets: per node 1..nodes, the index of its kept subset in ``subsets(node, kept)``
            (``None`` where every input is kept).
    """

    ops: tuple[int, ...]
    subsets: tuple[int | None, ...]

    def sources(self, space: SearchSpace, node: int) -> tuple[int, ...]:
        """The kept sources of node ``node``."""
        index = self.subsets[node - 1]
        return tuple(range(node)) if index is None else subsets(node, space.kept(node))[index]


def sample_choice(
    ops: torch.Tensor,
    inputs: torch.Tensor,
    space: SearchSpace,
    generator: torch.Generator | None = None,
) -> Choice:
    """A hard sample from ``softmax(ops)`` per edge and ``softmax(subset logits)`` per node
    (Gumbel-max: exact categorical samples; noise in the order of :func:`sampled_plan`)."""
    with torch.no_grad():
        noise = gumbel_noise(ops.shape, generator).to(ops.device)
        op_index = (ops.detach() + noise).argmax(dim=-1).tolist()
        chosen: list[int | None] = []
        for node in range(1, space.nodes + 1):
            if space.kept(node) == node:
                chosen.append(None)
                continue
            logits = subset_logits(inputs.detach(), space, node)
            g = gumbel_noise(logits.shape, generator).to(logits.device)
            chosen.append(int((logits + g).argmax()))
    return Choice(tuple(int(o) for o in op_index), tuple(chosen))


def fixed_plan(choice: Choice, space: SearchSpace) -> CellPlan:
    """The unweighted plan of ``choice`` (only the chosen ops of the kept edges run)."""
    plan = []
    for node in range(1, space.nodes + 1):
        start = edge_rows(node).start
        plan.append(
            tuple(Term(j, space.ops[choice.ops[start + j]]) for j in choice.sources(space, node))
        )
    return tuple(plan)


def log_prob(
    choice: Choice, ops: torch.Tensor, inputs: torch.Tensor, space: SearchSpace
) -> torch.Tensor:
    """Log-probability of ``choice`` under the logits, counting only the choices that shaped the
    child: the subsets, and the ops of the kept edges (an unkept edge's op changes nothing)."""
    log_ops = torch.log_softmax(ops, dim=-1)
    terms: list[torch.Tensor] = []
    for node in range(1, space.nodes + 1):
        start = edge_rows(node).start
        terms.extend(log_ops[start + j, choice.ops[start + j]] for j in choice.sources(space, node))
        index = choice.subsets[node - 1]
        if index is not None:
            terms.append(torch.log_softmax(subset_logits(inputs, space, node), dim=0)[index])
    return torch.stack(terms).sum()


def _binary_gates(
    logits: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``logits (R, n)``: the two candidates (Gumbel top-2: the first is an exact sample
    of ``softmax``, the second one drawn without replacement) and their gate weights ``(R, 2)``:
    value 1 for the first and 0 for the second, gradient that of their pair-softmax."""
    noise = gumbel_noise(logits.shape, generator).to(device=logits.device, dtype=logits.dtype)
    pair = (logits.detach() + noise).topk(2, dim=-1).indices
    p = torch.softmax(logits.gather(-1, pair), dim=-1)
    hard = torch.zeros_like(p)
    hard[:, 0] = 1.0
    return pair, hard - p.detach() + p


def binary_plan(
    ops: torch.Tensor,
    inputs: torch.Tensor,
    space: SearchSpace,
    generator: torch.Generator | None = None,
) -> CellPlan:
    """ProxylessNAS binary gates (Cai et al. 2019): per choice two sampled candidates run.

    Per edge two ops ``a`` (active) and ``b``, each term weighted by a gate ``g`` whose value is
    1 for ``a`` and 0 for ``b`` and whose gradient is that of ``softmax(alpha_a, alpha_b)``, so
    ``dL/dalpha_a = p_a p_b (<dL/dy, o_a> - <dL/dy, o_b>)``: the first-order difference of the
    loss between the two ops. The forward value is the active child's. Nodes that choose
    their inputs do the same with two subsets (the edges of both run). Candidates with a masked
    logit run with a zero gate of zero gradient (skipped when they are ``zero``).
    """
    if len(space.ops) < 2:
        return sampled_plan(ops, inputs, space, 1.0, generator)
    pairs, gates = _binary_gates(ops, generator)
    pair_index = pairs.tolist()
    plan = []
    for node in range(1, space.nodes + 1):
        rows = edge_rows(node)
        k = space.kept(node)
        edge_w: dict[int, torch.Tensor | None] = {}
        if k == node:
            edge_w = dict.fromkeys(range(node))
        else:
            logits = subset_logits(inputs, space, node)
            if len(logits) < 2:
                edge_w = dict.fromkeys(subsets(node, k)[0])
            else:
                sub_pair, sub_gate = _binary_gates(logits[None], generator)
                for slot, s in enumerate(sub_pair[0].tolist()):
                    for j in subsets(node, k)[s]:
                        w = sub_gate[0, slot]
                        prev = edge_w.get(j)
                        edge_w[j] = w if prev is None else prev + w
        terms = []
        for j in sorted(edge_w):
            r = rows.start + j
            for slot, o in enumerate(pair_index[r]):
                w = gates[r, slot]
                ew = edge_w[j]
                terms.append(Term(j, space.ops[o], w if ew is None else ew * w))
        plan.append(tuple(terms))
    return tuple(plan)


def choice_entropy(ops: torch.Tensor, inputs: torch.Tensor, space: SearchSpace) -> torch.Tensor:
    """``(ops, inputs)`` mean entropies (nats) of a cell's choices, differentiable: the op
    entropy over every edge row, the subset entropy over the nodes that choose (0 if none)."""
    log_p = torch.log_softmax(ops, dim=-1)
    op_h = -(log_p.exp() * log_p).sum(-1).mean()
    hs = []
    for node in range(1, space.nodes + 1):
        if space.kept(node) < node:
            lq = torch.log_softmax(subset_logits(inputs, space, node), dim=0)
            hs.append(-(lq.exp() * lq).sum())
    in_h = torch.stack(hs).mean() if hs else inputs.new_zeros(())
    return torch.stack([op_h, in_h])
