"""The searchable encoder–decoder: a :class:`CellNetwork` holding every candidate op on every
edge, plus the architecture logits.

Architecture parameters: per architecture key of the space, ``ops`` logits ``(E, n_ops)`` and
``inputs`` logits ``(E,)`` (rows in ``space.edges()`` order), initialised to zero (uniform). The
ops an edge may not choose (:func:`~nasmed.supernet.plans.op_mask`: ``zero`` where the
connectivity is chosen otherwise) are masked in :meth:`Supernet.logits`, in every sample and in
the entropies; the raw parameters (:meth:`Supernet.arch_logits`) keep their shape.

A space with macro choices (``stride_options``, ``width_options``) adds one logit vector per
choice (:meth:`Supernet.macro_logits`, :mod:`nasmed.supernet.macro`), among the architecture
parameters; every forward pass samples them (hard straight-through Gumbel) along with the cells,
the sample riding in the plans under :data:`~nasmed.supernet.macro.MACRO_KEY`. Plans given
without it (an estimator's) get a fresh macro sample. Only sampled mode supports them.

>>> net = Supernet(space, in_channels=1, out_channels=2)          # mode="sampled"
>>> weights, arch = net.weight_parameters(), net.arch_parameters()
>>> net.set_temperature(5.0)
>>> y = net(x, generator=torch.Generator().manual_seed(0))        # one sampled child
>>> genotype = decode(net.arch_logits(), space)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from nasmed.genotype import CellGenotype, EdgeChoice, Genotype, NodeChoice, space_record
from nasmed.supernet.cell import Term
from nasmed.supernet.macro import (
    MACRO_KEY,
    MacroPlan,
    macro_log_prob,
    macro_logit_shapes,
    sampled_macro,
)
from nasmed.supernet.network import CellNetwork
from nasmed.supernet.plans import (
    Mode,
    choice_entropy,
    masked_ops,
    mixed_plan,
    op_mask,
    sampled_plan,
)
from searchspaces import SearchSpace

__all__ = ["Supernet", "genotype_plans", "plan_genotype"]


class Supernet(nn.Module):
    """The supernet of a search space.

    Args:
        space: the search space.
        in_channels: image channels.
        out_channels: classes.
        mode: ``"sampled"`` (one hard Gumbel sample per forward; only sampled ops run) or
            ``"mixed"`` (DARTS: every op runs, softmax-weighted).
        tau: initial Gumbel-softmax temperature (see :meth:`set_temperature`).
        width: channel multiplier.
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        space: SearchSpace,
        in_channels: int,
        out_channels: int,
        *,
        mode: Mode | str = Mode.SAMPLED,
        tau: float = 1.0,
        width: float = 1.0,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        self.space = space
        self.mode = Mode(mode)
        if space.has_macro and self.mode is not Mode.SAMPLED:
            raise ValueError(
                f"space {space.name!r} has macro choices (stride_options / width_options); "
                "only mode 'sampled' supports them"
            )
        self.tau = float(tau)
        self.generator: torch.Generator | None = None
        every_op = {edge: space.ops for edge in space.edges()}
        self.net = CellNetwork(
            space,
            in_channels,
            out_channels,
            lambda _layer: every_op,
            width=width,
            spatial_dims=spatial_dims,
            dynamic=space.has_macro,
        )
        n_edges = len(space.edges())
        self.arch_ops = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(n_edges, len(space.ops))) for k in space.arch_keys()}
        )
        self.arch_inputs = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(n_edges)) for k in space.arch_keys()}
        )
        self.arch_macro = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(n)) for k, n in macro_logit_shapes(space).items()}
        )
        self.op_allowed: torch.Tensor
        self.register_buffer("op_allowed", torch.from_numpy(op_mask(space)), persistent=False)
        self.last_plans: dict[str, Any] = {}

    # -- parameters ----------------------------------------------------------------------------

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture logits (for the architecture optimiser), macro choices last."""
        return [*self.arch_ops.values(), *self.arch_inputs.values(), *self.arch_macro.values()]

    def macro_logits(self) -> dict[str, torch.Tensor]:
        """The logits of the macro choices, ``{"stride_l1": (n,), ..., "width_l0": (n,), ...}``
        (empty without macro choices)."""
        return dict(self.arch_macro.items())

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter: the operations' weights (for the weight optimiser)."""
        return list(self.net.parameters())

    def logits(self) -> dict[str, dict[str, torch.Tensor]]:
        """The logits of the choices (masked ops at :data:`~nasmed.supernet.plans.MASKED`),
        differentiable: ``{key: {"ops": (E, n), "inputs": (E,)}}``."""
        return {
            k: {"ops": masked_ops(self.arch_ops[k], self.op_allowed), "inputs": self.arch_inputs[k]}
            for k in self.space.arch_keys()
        }

    def _raw(self) -> dict[str, dict[str, nn.Parameter]]:
        out = {
            k: {"ops": self.arch_ops[k], "inputs": self.arch_inputs[k]}
            for k in self.space.arch_keys()
        }
        if len(self.arch_macro):
            out[MACRO_KEY] = dict(self.arch_macro.items())
        return out

    def arch_logits(self) -> dict[str, dict[str, np.ndarray]]:
        """The raw architecture parameters as numpy copies (snapshots, and the input of
        :func:`~nasmed.search.decode`, which applies the same mask); the macro choices' under
        :data:`~nasmed.supernet.macro.MACRO_KEY`."""
        return {
            k: {name: t.detach().cpu().numpy().copy() for name, t in d.items()}
            for k, d in self._raw().items()
        }

    def load_arch_logits(self, logits: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Set the architecture logits from numpy arrays (e.g. a snapshot)."""
        with torch.no_grad():
            for k, d in self._raw().items():
                for name, t in d.items():
                    t.copy_(torch.as_tensor(np.asarray(logits[k][name]), dtype=t.dtype))

    # -- sampling ------------------------------------------------------------------------------

    def set_temperature(self, tau: float) -> None:
        """Set the Gumbel-softmax temperature of later samples."""
        if tau <= 0:
            raise ValueError(f"temperature must be > 0, got {tau}")
        self.tau = float(tau)

    def plans(self, generator: torch.Generator | None = None) -> dict[str, Any]:
        """The plans of one forward: a fresh sample per key (sampled) or the mixture (mixed),
        and the macro sample (under ``MACRO_KEY``) of a space with macro choices."""
        out: dict[str, Any] = {}
        for key, d in self.logits().items():
            if self.mode is Mode.SAMPLED:
                out[key] = sampled_plan(d["ops"], d["inputs"], self.space, self.tau, generator)
            else:
                out[key] = mixed_plan(d["ops"], d["inputs"], self.space)
        if len(self.arch_macro):
            out[MACRO_KEY] = self.sample_macro(generator)
        return out

    def sample_macro(self, generator: torch.Generator | None = None) -> MacroPlan:
        """A hard straight-through Gumbel sample of the macro choices."""
        return sampled_macro(self.macro_logits(), self.space, self.tau, generator)

    def macro_log_prob(self) -> torch.Tensor | None:
        """Log-probability of the last forward pass's macro sample under the current logits
        (``None`` without macro choices), for score-function estimators."""
        plan = self.last_plans.get(MACRO_KEY)
        if not isinstance(plan, MacroPlan):
            return None
        return macro_log_prob(plan, self.macro_logits())

    def draw(
        self,
        generator: torch.Generator | None = None,
        plans: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The plans of the next forward pass (``plans``, or drawn as in :meth:`forward`), kept in
        ``last_plans``; plans without a macro sample get one (after the cells' noise)."""
        gen = generator if generator is not None else self.generator
        if plans is None:
            plans = self.plans(gen)
        self.last_plans = dict(plans)
        if len(self.arch_macro) and MACRO_KEY not in self.last_plans:
            self.last_plans[MACRO_KEY] = self.sample_macro(gen)
        return self.last_plans

    def forward(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        plans: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        """One forward pass; in sampled mode a new child is drawn from ``generator``.

        ``generator`` falls back to ``self.generator``, then to torch's global generator;
        ``plans`` (an estimator's) replace the drawn ones. The plans used are kept in
        ``last_plans`` (see :meth:`sampled_genotype`).
        """
        self.draw(generator, plans)
        out = self.net.forward_plans(x, self.last_plans)
        assert isinstance(out, torch.Tensor)
        return out

    def sampled_genotype(self) -> Genotype:
        """The child architecture of the last sampled forward pass."""
        if self.mode is not Mode.SAMPLED or not self.last_plans:
            raise RuntimeError("no sampled forward pass yet")
        return plan_genotype(self.last_plans, self.space)

    # -- monitoring ----------------------------------------------------------------------------

    def entropy_terms(self) -> torch.Tensor:
        """``(ops, inputs)``: the mean entropies (nats) of the op choices and of the input-subset
        choices of the nodes that have one (0 when none has), over every architecture key;
        with macro choices a third term, their mean entropy; differentiable in the logits (the
        search's decision term lowers their sum)."""
        cells = torch.stack(
            [choice_entropy(d["ops"], d["inputs"], self.space) for d in self.logits().values()]
        ).mean(0)
        if not len(self.arch_macro):
            return cells
        return torch.cat([cells, _mean_entropy(list(self.arch_macro.values()))[None]])

    def entropies(self) -> dict[str, float]:
        """:meth:`entropy_terms` as floats: ``{"ops": ..., "inputs": ...}`` (and ``"macro"``)."""
        with torch.no_grad():
            values = self.entropy_terms().tolist()
        return dict(zip(("ops", "inputs", "macro"), values))

    def max_entropies(self) -> dict[str, float]:
        """The entropies of the uniform distribution over the allowed choices (their maximum)."""
        with torch.no_grad():
            d = self.logits()[self.space.arch_keys()[0]]
            ops, inputs = choice_entropy(
                masked_ops(torch.zeros_like(d["ops"]), self.op_allowed),
                torch.zeros_like(d["inputs"]),
                self.space,
            ).tolist()
            out = {"ops": ops, "inputs": inputs}
            if len(self.arch_macro):
                uniform = [torch.zeros_like(p) for p in self.arch_macro.values()]
                out["macro"] = float(_mean_entropy(uniform))
        return out


def _mean_entropy(logits: list[torch.Tensor]) -> torch.Tensor:
    """Mean entropy (nats) of categorical choices given by their logits."""
    terms = []
    for value in logits:
        log_p = torch.log_softmax(value, dim=0)
        terms.append(-(log_p.exp() * log_p).sum())
    return torch.stack(terms).mean()


def plan_genotype(
    plans: Mapping[str, Any],
    space: SearchSpace,
    *,
    seed: int | None = None,
    search: Mapping[str, Any] | None = None,
) -> Genotype:
    """The genotype of sampled plans (one term per kept edge)."""
    cells = []
    for key in space.arch_keys():
        nodes = []
        for terms in plans[key]:
            edges = sorted((EdgeChoice(t.source, t.op) for t in terms), key=lambda e: e.source)
            nodes.append(NodeChoice(tuple(edges)))
        cells.append(CellGenotype(key, tuple(nodes)))
    macro = plans.get(MACRO_KEY)
    strides = macro.strides if isinstance(macro, MacroPlan) else None
    widths = macro.widths if isinstance(macro, MacroPlan) else None
    return Genotype(
        space.name,
        space.content_hash(),
        tuple(cells),
        seed,
        dict(search or {}),
        strides=strides,
        widths=widths,
        space_def=space_record(space),
    )


def genotype_plans(genotype: Genotype) -> dict[str, Any]:
    """Fixed plans (unweighted terms) of every architecture key (the inverse of
    :func:`plan_genotype`), and the genotype's macro choices under ``MACRO_KEY`` (read by a
    dynamic network, ignored by a derived one, which is built with them)."""
    out: dict[str, Any] = {
        cell.key: tuple(tuple(Term(e.source, e.op) for e in node.inputs) for node in cell.nodes)
        for cell in genotype.cells
    }
    out[MACRO_KEY] = MacroPlan(genotype.strides, genotype.widths)
    return out
