"""What a search records about itself: entropies of the choices, peak memory, the argmax child.

:func:`entropy_fields` gives the ``entropy_*`` columns of ``history.csv`` (per architecture key
and overall, over the choices an edge may make: masked ops do not count), with their maxima
(``entropy_ops_max``, ``entropy_inputs_max``: the uniform distribution's) so a reader sees how
far the search is from deciding.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch
from torch import nn

from decathlon.fsutil import atomic_write_json
from nasmed.genotype import Genotype
from nasmed.supernet import Supernet, genotype_plans
from nasmed.supernet.plans import choice_entropy

__all__ = ["ArgmaxChild", "entropy_fields", "peak_memory_mb", "write_snapshot"]


class ArgmaxChild(nn.Module):
    """The supernet running one fixed genotype (its weights shared, nothing copied)."""

    def __init__(self, supernet: Supernet, genotype: Genotype) -> None:
        super().__init__()
        self.supernet = supernet
        self.plans = genotype_plans(genotype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.supernet.net.forward_plans(x, self.plans)
        assert isinstance(out, torch.Tensor)
        return out


def entropy_fields(supernet: Supernet) -> dict[str, float]:
    """Entropies (nats) of the op and input choices, per architecture key and overall, and
    their maxima."""
    out: dict[str, float] = {}
    with torch.no_grad():
        for key, d in supernet.logits().items():
            ops, inputs = choice_entropy(d["ops"], d["inputs"], supernet.space).tolist()
            out[f"entropy_ops.{key}"] = ops
            out[f"entropy_inputs.{key}"] = inputs
    overall = supernet.entropies()
    most = supernet.max_entropies()
    out["entropy_ops"] = overall["ops"]
    out["entropy_inputs"] = overall["inputs"]
    out["entropy_ops_max"] = most["ops"]
    out["entropy_inputs_max"] = most["inputs"]
    return out


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated (since the last reset), else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def write_snapshot(path: Path, supernet: Supernet, epoch: int, tau: float) -> None:
    """Write the raw architecture logits after ``epoch`` to ``path`` (plain JSON, atomic)."""
    space = supernet.space
    atomic_write_json(
        path,
        {
            "epoch": epoch,
            "tau": tau,
            "space": space.name,
            "space_hash": space.content_hash(),
            "ops": list(space.ops),
            "edges": [list(e) for e in space.edges()],
            "logits": {
                key: {name: a.tolist() for name, a in d.items()}
                for key, d in supernet.arch_logits().items()
            },
        },
        indent=1,
    )
