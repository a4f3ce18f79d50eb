"""Planted problems: searches with a known answer, to check that an estimator finds it.

One cell of one edge (``0 -> 1``) of a real :class:`~nasmed.supernet.Supernet` learns to map a
random input to the output of a fixed *teacher*, a 3x3x3 convolution of dilation 2 (a ``dil3``
block with frozen random weights), under a mean squared error. Five candidates compete:

- ``dil3`` (the planted answer: the only candidate that sees the teacher's taps two voxels away),
- ``conv3``, ``conv1``, ``identity`` (too small a receptive field),
- ``noisy3`` (harmful: a ``conv3`` block plus unit Gaussian noise on its output).

:func:`search_planted` runs the :class:`~nasmed.search.searcher.Searcher`'s own weights and
architecture steps (and its epoch schedule) on fresh random batches: the estimator, the
optimisers, the entropy term and the sampling plans are the search's, only the loss and the data
are the problem's. The tests of the estimators and docs/search.md's comparison use it.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from nasmed.ops import create_op, register_op
from nasmed.ops.candidates import Conv3
from nasmed.search.config import SearchConfig, WeightOptimizer
from nasmed.search.searcher import Searcher
from nasmed.supernet import Supernet
from nasmed.supernet.cell import CellPlan
from searchspaces import SearchSpace

__all__ = [
    "HARMFUL_OP",
    "PLANTED_OP",
    "Noisy3",
    "PlantedResult",
    "PlantedSearch",
    "planted_config",
    "planted_space",
    "search_planted",
]

PLANTED_OP = "dil3"
HARMFUL_OP = "noisy3"
CHANNELS = 4
SIDE = 10


@register_op(HARMFUL_OP, "3x3x3 convolution plus unit Gaussian noise (a harmful candidate)")
class Noisy3(Conv3):
    """A ``conv3`` block whose output gets unit Gaussian noise (torch's global generator)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + torch.randn_like(y)


def planted_space() -> SearchSpace:
    """One level, one node with one edge, the five candidates of the module docs."""
    return SearchSpace(
        name="planted",
        levels=1,
        base_channels=CHANNELS,
        nodes=1,
        inputs_per_node=1,
        ops=("conv3", PLANTED_OP, "conv1", "identity", HARMFUL_OP),
    )


def planted_config(estimator: str, seed: int = 0, **changes: Any) -> SearchConfig:
    """The settings of a planted search: 4 warm-up and 8 search epochs of 25 steps, AdamW on
    the weights; ``changes`` override any field."""
    base = SearchConfig(
        space="planted",
        epochs=12,
        warmup_epochs=4,
        steps_per_epoch=25,
        batch_size=2,
        estimator=estimator,  # type: ignore[arg-type]
        weight_optimizer=WeightOptimizer.ADAMW,
        weight_lr=1e-2,
        arch_lr=0.05,
        seed=seed,
    )
    return replace(base, **changes)


class _CellProbe(nn.Module):
    """Runs only the first cell of the supernet (the searched edge and its projection)."""

    def __init__(self, supernet: Supernet) -> None:
        super().__init__()
        self.supernet = supernet
        self.layer = supernet.space.layers()[0]

    def forward(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        plans: Mapping[str, CellPlan] | None = None,
    ) -> torch.Tensor:
        plan = self.supernet.draw(generator, plans)[self.layer.key]
        out: torch.Tensor = self.supernet.net.cells[self.layer.name](x, plan)
        return out


@dataclass(frozen=True)
class PlantedResult:
    """The end of a planted search.

    Attributes:
        probabilities: ``{op: probability}`` of the searched edge.
        entropy: the op entropy (nats) at the end.
        max_entropy: its maximum (``ln`` of the number of candidates).
        history: per epoch, ``(mean arch loss, op entropy)``.
    """

    probabilities: dict[str, float]
    entropy: float
    max_entropy: float
    history: tuple[tuple[float, float], ...]

    @property
    def chosen(self) -> str:
        """The op with the highest probability."""
        return max(self.probabilities, key=self.probabilities.__getitem__)


def _batch(gen: torch.Generator, teacher: nn.Module, batch: int) -> dict[str, torch.Tensor]:
    x = torch.randn(batch, CHANNELS, SIDE, SIDE, SIDE, generator=gen)
    with torch.no_grad():
        y = teacher(x)
    return {"image": x, "label": y}


def probe_searcher(
    supernet: Supernet,
    config: SearchConfig,
    run_dir: str,
    channels: int,
    probe: nn.Module,
    side: int = SIDE,
) -> Searcher:
    """A CPU :class:`Searcher` of ``supernet`` whose network is ``probe`` (the part of the
    supernet a planted problem runs, on ``side``^3 inputs) and whose loss is the MSE; seeded from
    ``config.seed``."""
    searcher = Searcher(
        supernet,
        config,
        cache_dir=None,
        run_dir=run_dir,
        device=torch.device("cpu"),
        patch=(side, side, side),
        in_channels=channels,
        out_channels=channels,
        generator=torch.Generator().manual_seed(config.seed + 2),
        progress=False,
    )
    searcher.net = probe
    searcher.loss_fn = nn.MSELoss()
    return searcher


def search_epoch(
    searcher: Searcher, epoch: int, batch: Callable[[], dict[str, torch.Tensor]]
) -> float:
    """One epoch of ``searcher``'s schedule on fresh batches from ``batch()`` (a weights step,
    then an architecture step once the warm-up is over); returns the mean architecture loss."""
    searching, _, _ = searcher.begin_epoch(epoch)
    losses = []
    for _ in range(searcher.config.steps_per_epoch):
        searcher.weights_step(batch())
        if searching:
            losses.append(searcher.arch_step(batch()))
    return sum(losses) / len(losses) if losses else math.nan


class PlantedSearch:
    """The :class:`Searcher` of a planted problem, its teacher and its data (see the module
    docs); :meth:`run` searches, :meth:`batch` draws a fresh batch, :meth:`arch_gradient` is
    one estimate of the gradient of the searched edge's logits (for signal-to-noise studies).

    Deterministic for a seed (CPU): the teacher, the initial weights, the data and the samples
    all derive from ``config.seed``.
    """

    def __init__(self, config: SearchConfig, run_dir: str) -> None:
        torch.manual_seed(config.seed)
        self.config = config
        space = planted_space()
        self.teacher = create_op(
            PLANTED_OP,
            3,
            in_channels=CHANNELS,
            out_channels=CHANNELS,
            norm=space.norm,
            act=space.act,
        ).eval()
        self.supernet = Supernet(space, CHANNELS, CHANNELS, tau=config.tau_start)
        self.data = torch.Generator().manual_seed(config.seed + 1)
        self.searcher = probe_searcher(
            self.supernet, config, run_dir, CHANNELS, _CellProbe(self.supernet)
        )

    def batch(self) -> dict[str, torch.Tensor]:
        """A fresh batch: random inputs and the teacher's outputs."""
        x = torch.randn(self.config.batch_size, CHANNELS, SIDE, SIDE, SIDE, generator=self.data)
        with torch.no_grad():
            y = self.teacher(x)
        return {"image": x, "label": y}

    def run_epoch(self, epoch: int) -> tuple[float, float]:
        """One epoch of the search's schedule; returns ``(mean arch loss, op entropy)``."""
        return (search_epoch(self.searcher, epoch, self.batch), self.entropy())

    def arch_gradient(self) -> torch.Tensor:
        """One estimate of the gradient of the searched edge's op logits (nothing updated)."""
        s = self.searcher
        s.a_opt.zero_grad(set_to_none=True)
        surrogate, _ = s.estimator.surrogate(
            self.supernet, lambda plans: s.seg_loss(self.batch(), plans), s.generator
        )
        surrogate.backward(inputs=s.arch_params)
        key = self.supernet.space.layers()[0].key
        grad = self.supernet.arch_ops[key].grad
        assert grad is not None
        out = grad[0].clone()
        s.a_opt.zero_grad(set_to_none=True)
        return out

    def edge_logits(self) -> torch.Tensor:
        """The op logits of the searched edge (the first cell's key; the others never run)."""
        return self.supernet.logits()[self.supernet.space.layers()[0].key]["ops"][0].detach()

    def entropy(self) -> float:
        """The op entropy (nats) of the searched edge."""
        log_p = torch.log_softmax(self.edge_logits(), dim=0)
        return float(-(log_p.exp() * log_p).sum())

    def result(self, history: tuple[tuple[float, float], ...] = ()) -> PlantedResult:
        """Where the search stands."""
        space = self.supernet.space
        probs = torch.softmax(self.edge_logits(), dim=0)
        return PlantedResult(
            {op: float(p) for op, p in zip(space.ops, probs)},
            self.entropy(),
            math.log(len(space.ops)),
            history,
        )


def search_planted(config: SearchConfig) -> PlantedResult:
    """Search the planted problem with ``config`` (its estimator, schedules and seed)."""
    with tempfile.TemporaryDirectory() as run_dir:
        problem = PlantedSearch(config, run_dir)
        history = tuple(problem.run_epoch(epoch) for epoch in range(config.epochs))
        return problem.result(history)
