"""Planted macro problems: a stride choice and a width choice with a known answer.

The input is piecewise constant over 2x2 in-plane blocks (axes 0 and 1) and white noise along
the last axis; the target is the input itself. The probe runs a real supernet's level-1
reduction cell (whose stride is searched among ``2x2x2``, ``2x2x1`` and ``1x2x2``), the mirrored
expansion cell and the head, without the level-0 skip, through one channel at level 1. Only
stride ``2x2x1`` keeps everything (it merges only equal voxels); the others merge pairs of
independent values along the last axis into one value and lose half of the signal. So the
search should choose ``(2, 2, 1)``: the anisotropic case nnU-Net handles by not pooling an axis.

The width problem (``problem="width"``): the input is 4 channels of white noise at full
resolution and the target is the input; the probe runs the stem and the level-0 encoder cell
(width 0.25x or 1x of 8 channels) and the head. Only the 8-channel child can pass 4 independent
channels through conv -> norm -> LeakyReLU blocks (2 channels cannot), so the search should
choose width 1 (:data:`PLANTED_WIDTH`).

:func:`search_planted_macro` runs the :class:`~nasmed.search.searcher.Searcher`'s own weights
and architecture steps (its estimator, optimisers and schedules) on fresh random batches, as
:mod:`nasmed.search.planted` does for the cell ops.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasmed.search.config import SearchConfig
from nasmed.search.planted import planted_config, probe_searcher, search_epoch
from nasmed.supernet import Supernet
from nasmed.supernet.macro import MACRO_KEY, MacroPlan
from searchspaces import CellOutput, SearchSpace

__all__ = [
    "PLANTED_STRIDE",
    "PLANTED_WIDTH",
    "MacroResult",
    "PlantedMacroSearch",
    "planted_macro_config",
    "planted_macro_space",
    "search_planted_macro",
]

PLANTED_STRIDE = (2, 2, 1)
PLANTED_WIDTH = 1.0
WIDTH_CHANNELS = 4
SIDE = 8


def planted_macro_space() -> SearchSpace:
    """One level of one channel, cells that only pass their entry block on, three strides."""
    return SearchSpace(
        name="planted-macro",
        levels=1,
        base_channels=2,
        channel_growth=1.0,
        nodes=1,
        inputs_per_node=1,
        ops=("identity",),
        cell_output=CellOutput.SUM,
        stride_options=((2, 2, 2), PLANTED_STRIDE, (1, 2, 2)),
    )


def planted_width_space() -> SearchSpace:
    """One level, 8 channels at level 0, widths 0.25x and 1x."""
    return SearchSpace(
        name="planted-width",
        levels=1,
        base_channels=8,
        channel_growth=1.0,
        nodes=1,
        inputs_per_node=1,
        ops=("identity",),
        cell_output=CellOutput.SUM,
        width_options=(0.25, PLANTED_WIDTH),
    )


def planted_macro_config(
    estimator: str = "reinforce", seed: int = 0, **changes: Any
) -> SearchConfig:
    """:func:`~nasmed.search.planted.planted_config` on the macro space, batches of 4;
    ``changes`` override any field."""
    return planted_config(estimator, seed, **{"space": "planted-macro", "batch_size": 4, **changes})


class _MacroProbe(nn.Module):
    """Stem, then the given cells (no skip), then the head."""

    def __init__(self, supernet: Supernet, cells: tuple[str, ...]) -> None:
        super().__init__()
        self.supernet = supernet
        by_name = {layer.name: layer for layer in supernet.space.layers()}
        self.cells = tuple(by_name[name] for name in cells)

    def forward(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        plans: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        plans = self.supernet.draw(generator, plans)
        macro = plans[MACRO_KEY]
        assert isinstance(macro, MacroPlan)
        net = self.supernet.net
        with net.macro_context(macro):
            h = net.stem(x)
            for layer in self.cells:
                h = net.macro_weights(macro, layer, net.cells[layer.name](h, plans[layer.key]))
            out: torch.Tensor = net.head(h)
        return out


@dataclass(frozen=True)
class MacroResult:
    """The end of a planted macro search.

    Attributes:
        probabilities: ``{option: probability}`` of the searched choice (strides, or widths).
        history: per epoch, the mean architecture loss.
    """

    probabilities: dict[Any, float]
    history: tuple[float, ...]

    @property
    def chosen(self) -> Any:
        """The option with the highest probability."""
        return max(self.probabilities, key=self.probabilities.__getitem__)


class PlantedMacroSearch:
    """The :class:`Searcher` of a planted macro problem, ``"stride"`` or ``"width"``
    (deterministic for a seed, CPU)."""

    def __init__(self, config: SearchConfig, run_dir: str, problem: str = "stride") -> None:
        if problem not in ("stride", "width"):
            raise ValueError(f"problem must be 'stride' or 'width', got {problem!r}")
        torch.manual_seed(config.seed)
        self.config = config
        self.problem = problem
        space = planted_macro_space() if problem == "stride" else planted_width_space()
        self.channels = 1 if problem == "stride" else WIDTH_CHANNELS
        c = self.channels
        self.supernet = Supernet(space, c, c, tau=config.tau_start)
        self.data = torch.Generator().manual_seed(config.seed + 1)
        cells = ("reduction_l1", "expansion_l0") if problem == "stride" else ("encoder_l0_c0",)
        self.searcher = probe_searcher(
            self.supernet, config, run_dir, c, _MacroProbe(self.supernet, cells), SIDE
        )

    def batch(self) -> dict[str, torch.Tensor]:
        """The problem's inputs (target = input): see the module docs."""
        b = self.config.batch_size
        if self.problem == "width":
            x = torch.randn(b, self.channels, SIDE, SIDE, SIDE, generator=self.data)
            return {"image": x, "label": x.clone()}
        low = torch.randn(b, 1, SIDE // 2, SIDE // 2, SIDE, generator=self.data)
        x = F.interpolate(low, scale_factor=(2.0, 2.0, 1.0), mode="nearest")
        return {"image": x, "label": x.clone()}

    def run_epoch(self, epoch: int) -> float:
        """One epoch of the search's schedule; returns the mean architecture loss."""
        return search_epoch(self.searcher, epoch, self.batch)

    def result(self, history: tuple[float, ...] = ()) -> MacroResult:
        """Where the search stands."""
        space = self.supernet.space
        name = "stride_l1" if self.problem == "stride" else "width_l0"
        options: tuple[Any, ...] = space.stride_options or space.width_options
        probs = torch.softmax(self.supernet.macro_logits()[name].detach(), dim=0)
        return MacroResult({o: float(p) for o, p in zip(options, probs)}, history)


def search_planted_macro(config: SearchConfig, problem: str = "stride") -> MacroResult:
    """Search the planted ``problem`` (``"stride"`` or ``"width"``) with ``config``."""
    with tempfile.TemporaryDirectory() as run_dir:
        search = PlantedMacroSearch(config, run_dir, problem)
        history = tuple(search.run_epoch(epoch) for epoch in range(config.epochs))
        return search.result(history)
