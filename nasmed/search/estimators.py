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
from nasmed.supernet.plans import binary_plan, fixed_plan, log_prob, sample_choice

__all__ = ["BASELINE_DECAY", "ArchEstimator", "Gdas", "Proxyless", "Reinforce", "make_estimator"]

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

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs (plain floats; weights-only loadable)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (an empty mapping: the initial state)."""


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
    """Score-function estimator with a moving-average baseline; the child runs forward only."""

    kind = Estimator.REINFORCE

    def __init__(self) -> None:
        self.baseline: float | None = None

    def surrogate(
        self, supernet: Supernet, loss_of: LossOf, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, float]:
        logits = supernet.logits()
        choices = {
            key: sample_choice(d["ops"], d["inputs"], supernet.space, generator)
            for key, d in logits.items()
        }
        with torch.no_grad():
            loss = float(loss_of({k: fixed_plan(c, supernet.space) for k, c in choices.items()}))
        advantage = 0.0 if self.baseline is None else loss - self.baseline
        self.baseline = (
            loss
            if self.baseline is None
            else BASELINE_DECAY * self.baseline + (1 - BASELINE_DECAY) * loss
        )
        logp = torch.stack(
            [
                log_prob(c, logits[k]["ops"], logits[k]["inputs"], supernet.space)
                for k, c in choices.items()
            ]
        ).sum()
        macro = supernet.macro_log_prob()  # the macro sample the child ran with
        if macro is not None:
            logp = logp + macro
        return advantage * logp, loss

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
