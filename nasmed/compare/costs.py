"""What a network costs, measured, and the baseline widths that match the found network's cost.

- parameters: counted;
- FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` over one forward pass of one patch
  (batch 1, eval mode, no gradient);
- step time: the median wall time of ``repeats`` training steps (forward, Dice + CE, backward,
  SGD step) on a batch of random patches, after one untimed warm-up step. Timing depends on the
  machine and its load: only ratios measured side by side in one comparison mean anything.

:func:`match_widths` picks, per baseline and criterion, the width whose cost is closest (in
ratio) to the reference network's. The measurements are written once to ``OUT/costs.json`` and
reused on resume, so a resumed comparison trains the same widths for the same budgets.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from nasmed.compare.config import Match
from nasmed.engine.precision import Precision, resolve_precision
from nasmed.genotype import Genotype
from nasmed.models.factory import build_model
from nasmed.train.losses import make_seg_loss

__all__ = ["Cost", "match_widths", "measure_cost", "nearest_width"]


@dataclass(frozen=True)
class Cost:
    """Measured cost of one network at one patch.

    Attributes:
        params: parameters.
        flops: FLOPs of one forward pass of one patch.
        step_seconds: median seconds of one training step of a batch.
    """

    params: int
    flops: float
    step_seconds: float

    def value(self, match: Match) -> float:
        """The cost that ``match`` compares."""
        return {
            Match.PARAMS: float(self.params),
            Match.FLOPS: self.flops,
            Match.STEP_TIME: self.step_seconds,
        }[Match(match)]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cost:
        """Inverse of :meth:`to_json`."""
        return cls(int(data["params"]), float(data["flops"]), float(data["step_seconds"]))


def measure_cost(
    arch: Genotype | str,
    in_channels: int,
    out_channels: int,
    patch: tuple[int, int, int],
    *,
    width: float = 1.0,
    batch_size: int = 2,
    spacing: Sequence[float] | None = None,
    device: torch.device | str = "cpu",
    repeats: int = 3,
    time_step: bool = True,
    amp: bool | None = None,
) -> Cost:
    """Parameters, forward FLOPs of one patch and the step time of ``arch`` at ``width``.

    Args:
        arch: a genotype or a baseline name.
        in_channels: image channels.
        out_channels: classes, background included.
        patch: the training patch.
        width: channel multiplier.
        batch_size: patches per timed step.
        spacing: voxel spacing (``dynunet``'s kernels).
        device: where to measure.
        repeats: timed steps (the median is kept).
        time_step: measure the step time (``False``: ``step_seconds`` is ``nan``).
        amp: time the step under autocast, as training with ``amp`` runs it (``None``: on with
            CUDA only).
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    net = build_model(arch, in_channels, out_channels, width=width, patch=patch, spacing=spacing)
    net = net.to(dev)
    params = sum(p.numel() for p in net.parameters())
    net.eval()
    x1 = torch.randn(1, in_channels, *patch, device=dev)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x1)
    flops = float(counter.get_total_flops())
    step = math.nan
    if time_step:
        net.train()
        precision = Precision(resolve_precision(amp, "auto", dev), dev)
        loss_fn = make_seg_loss()
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(batch_size, in_channels, *patch, device=dev)
        y = torch.randint(0, out_channels, (batch_size, 1, *patch), device=dev)
        times = []
        for i in range(repeats + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with precision.autocast():
                out = net(x)
                out = out[0] if isinstance(out, (tuple, list)) else out
            loss = loss_fn(out.float(), y)
            precision.backward(loss)
            precision.step(opt)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i > 0:  # the first step warms up allocators and kernels
                times.append(time.perf_counter() - start)
        step = statistics.median(times)
    return Cost(params, flops, step)


def nearest_width(target: float, costs: Mapping[float, float]) -> float:
    """The width whose cost is closest to ``target`` in ratio (``|log(cost / target)|``).

    Ties go to the smaller width. Non-positive or non-finite costs are skipped.

    Raises:
        ValueError: no usable cost, or a non-positive target.
    """
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"cannot match a cost of {target}")
    usable = {w: c for w, c in costs.items() if math.isfinite(c) and c > 0}
    if not usable:
        raise ValueError("no width has a usable cost")
    return min(sorted(usable), key=lambda w: abs(math.log(usable[w] / target)))


def match_widths(
    target: Cost,
    measure: Callable[[float, bool], Cost],
    widths: Sequence[float],
    criteria: Sequence[Match],
) -> tuple[dict[str, float], dict[float, Cost]]:
    """Per criterion, the width of a baseline whose cost is nearest ``target``'s.

    Args:
        target: the reference network's cost.
        measure: ``measure(width, time_step)`` -> the baseline's cost at that width.
        widths: the widths to try.
        criteria: what to match.

    Returns:
        ``{criterion: width}`` and every cost measured, by width.
    """
    timed = Match.STEP_TIME in criteria
    costs = {float(w): measure(float(w), timed) for w in widths}
    chosen = {
        m.value: nearest_width(target.value(m), {w: c.value(m) for w, c in costs.items()})
        for m in criteria
    }
    return chosen, costs
