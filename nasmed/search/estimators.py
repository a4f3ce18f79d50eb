"""Architecture-gradient estimators: how one architecture step scores the logits.

Each estimator draws the child(ren) of one step from the supernet's logits, runs them on a batch
of the architecture half and returns a *surrogate* whose gradient in the logits is the estimate
(plus the segmentation loss, for the history). The :class:`~nasmed.search.searcher.Searcher`
back-propagates the surrogate into the logits only and steps Adam(W).

- :class:`Gdas` (Dong & Yang, "Searching for a robust neural architecture in four GPU hours",
  CVPR 2019): one hard straight-through Gumbel-softmax sample per choice; the gradient of a
  logit flows through the sampled op's output as through the soft sample at temperature ``tau``.
  It asks "should the sampled op's output grow or shrink?", not "is it better than the others?",
  and its size depends on the scale of that output (a parameter-free ``identity`` is not on the
  scale of a normalised convolution).
- :class:`Proxyless` (Cai, Zhu & Han, "ProxylessNAS: direct neural architecture search on target
  task and hardware", ICLR 2019): binary gates; per choice two candidates are sampled and both
  run (:func:`~nasmed.supernet.plans.binary_plan`); ``dL/dalpha_a = p_a p_b (<G, o_a> - <G,
  o_b>)`` is the first-order difference of the loss between the two ops, so the better one gains
  probability whatever the scale of the outputs. Memory: about two children.
- :class:`Reinforce` (Williams 1992, the score-function estimator, with the moving-average
  baseline of ENAS, Pham et al. 2018): the child runs forward only, under ``torch.no_grad``;
  the surrogate is ``(loss - baseline) * log p(child)``. It compares children on their actual
  loss (less memory than one training step; no assumption on the ops' output scales).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from nasmed.search.config import Estimator
from nasmed.supernet import Supernet
from nasmed.supernet.cell import CellPlan
from nasmed.supernet.plans import (
    binary_plan,
    fixed_plan,
    log_prob,
    sample_choice,
    subset_logits,
)

__all__ = [
    "BASELINE_DECAY",
    "ArchEstimator",
    "Gdas",
    "Proxyless",
    "Reinforce",
    "choice_entropy_sum",
    "make_estimator",
]

#: Moving-average decay of :class:`Reinforce`'s baseline (per architecture step).
BASELINE_DECAY = 0.9

#: Runs the supernet on the step's batch with the given plans (``None``: a fresh hard Gumbel
#: sample at the supernet's temperature) and returns the segmentation loss.
LossOf = Callable[[Mapping[str, CellPlan] | None], torch.Tensor]


class ArchEstimator:
    """The interface: :meth:`surrogate` and a (small) resumable state."""

    kind: Estimator

    def surrogate(
        self, supernet: Supernet, loss_of: LossOf, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, float]:
        """``(surrogate, loss)``: a scalar whose gradient in the logits is the estimate, and the
        segmentation loss of the step's child."""
        raise NotImplementedError

    def decide(self, supernet: Supernet, rate: float) -> None:
        """The entropy step: ``alpha -= rate * d(sum_c n_c H_c)/d alpha``.

        Every choice ``c`` (an edge's op, a node's input subset) descends its *own* entropy
        ``H_c`` weighted by its number of candidates ``n_c``: near the uniform distribution
        this multiplies the choice's deviations from their mean by about ``1 + rate`` per step,
        whatever the number of candidates and the number of choices in the space (the earlier
        step descended the *mean* entropy, so on a space of 1,300 logits it did nothing). It
        sharpens what the estimator already prefers, and leaves alone what it does not.
        """
        if rate <= 0:
            return
        params = supernet.arch_parameters()
        h = choice_entropy_sum(supernet)
        grads = torch.autograd.grad(h, params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is not None:
                    p.sub_(rate * g)

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs (plain floats; weights-only loadable)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (an empty mapping: the initial state)."""


def choice_entropy_sum(supernet: Supernet) -> torch.Tensor:
    """``sum_c n_c H_c`` over every choice of every architecture key: each edge's op (``n_c``
    its allowed ops; masked ops have probability 0) and each choosing node's input subset
    (``n_c`` its subsets), and each macro choice (``n_c`` its options); entropies in nats,
    differentiable."""
    space = supernet.space
    allowed = supernet.op_allowed.sum(-1).to(torch.float32)
    terms = []
    for d in supernet.logits().values():
        log_p = torch.log_softmax(d["ops"], dim=-1)
        terms.append((allowed * -(log_p.exp() * log_p).sum(-1)).sum())
        for node in range(1, space.nodes + 1):
            if space.kept(node) < node:
                lq = torch.log_softmax(subset_logits(d["inputs"], space, node), dim=0)
                terms.append(-(lq.exp() * lq).sum() * lq.numel())
    for logit in supernet.macro_logits().values():  # per-level strides and widths, if searched
        lm = torch.log_softmax(logit, dim=0)
        terms.append(-(lm.exp() * lm).sum() * lm.numel())
    return torch.stack(terms).sum()


class Gdas(ArchEstimator):
    """Hard straight-through Gumbel-softmax (GDAS); the surrogate is the loss itself."""

    kind = Estimator.GDAS

    def surrogate(
        self, supernet: Supernet, loss_of: LossOf, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, float]:
        loss = loss_of(None)
        return loss, float(loss.detach())


class Proxyless(ArchEstimator):
    """ProxylessNAS binary gates over two sampled candidates per choice."""

    kind = Estimator.PROXYLESS

    def surrogate(
        self, supernet: Supernet, loss_of: LossOf, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, float]:
        plans = {
            key: binary_plan(d["ops"], d["inputs"], supernet.space, generator)
            for key, d in supernet.logits().items()
        }
        loss = loss_of(plans)
        return loss, float(loss.detach())


class Reinforce(ArchEstimator):
    """Score-function estimator; the children run forward only.

    With ``samples`` = 1, one child per step and a moving-average baseline (ENAS). With
    ``samples`` = K > 1, K children on the *same* batch and the leave-one-out baseline (RLOO,
    Kool, van Hoof & Welling 2019): child k's advantage is its loss minus the mean of the other
    K - 1, so the batch's difficulty, which dominates the loss's variance, cancels.
    """

    kind = Estimator.REINFORCE

    def __init__(self, samples: int = 1) -> None:
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.samples = samples
        self.baseline: float | None = None

    def surrogate(
        self, supernet: Supernet, loss_of: LossOf, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, float]:
        logits = supernet.logits()
        draws = []
        for _ in range(self.samples):
            choices = {
                key: sample_choice(d["ops"], d["inputs"], supernet.space, generator)
                for key, d in logits.items()
            }
            with torch.no_grad():
                plans = {k: fixed_plan(c, supernet.space) for k, c in choices.items()}
                loss = float(loss_of(plans))
            # the macro sample this child ran with (drawn by the forward pass), with its gradient
            draws.append((choices, loss, supernet.macro_log_prob()))
        losses = [loss for _, loss, _ in draws]
        mean = sum(losses) / len(losses)
        if self.samples > 1:
            k = self.samples
            advantages = [(loss - (k * mean - loss) / (k - 1)) for loss in losses]
        else:
            advantages = [0.0 if self.baseline is None else losses[0] - self.baseline]
        self.baseline = (
            mean
            if self.baseline is None
            else BASELINE_DECAY * self.baseline + (1 - BASELINE_DECAY) * mean
        )
        terms = []
        for (choices, _, macro), advantage in zip(draws, advantages):
            logp = torch.stack(
                [
                    log_prob(c, logits[key]["ops"], logits[key]["inputs"], supernet.space)
                    for key, c in choices.items()
                ]
            ).sum()
            if macro is not None:
                logp = logp + macro
            terms.append(advantage * logp)
        return torch.stack(terms).sum() / len(terms), mean

    def state_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        baseline = state.get("baseline")
        self.baseline = None if baseline is None else float(baseline)


def make_estimator(kind: Estimator | str) -> ArchEstimator:
    """The estimator named ``kind`` (``gdas``, ``proxyless``, ``reinforce``)."""
    classes: dict[Estimator, type[ArchEstimator]] = {
        Estimator.GDAS: Gdas,
        Estimator.PROXYLESS: Proxyless,
        Estimator.REINFORCE: Reinforce,
    }
    return classes[Estimator(kind)]()
