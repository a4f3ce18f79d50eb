"""Augmentation policies: sub-policies of two (operation, probability, magnitude) steps.

A :class:`Policy` is plain data with a JSON round trip. Applied to a batch, each image draws one
sub-policy uniformly; each of its steps then runs with its probability. The empty policy is the
identity (no augmentation).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from decathlon.fsutil import atomic_write_json
from nasmed.classify.autoaugment.ops import OPS, apply_op
from nasmed.errors import ConfigError

__all__ = ["POLICY_SCHEMA", "Policy", "Step", "SubPolicy", "random_subpolicy"]

POLICY_SCHEMA = 1


@dataclass(frozen=True)
class Step:
    """One operation of a sub-policy, applied with probability ``prob`` at ``magnitude``."""

    op: str
    prob: float
    magnitude: float

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ConfigError(f"unknown augmentation op {self.op!r}; known: {', '.join(OPS)}")
        for name, v in (("prob", self.prob), ("magnitude", self.magnitude)):
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"augmentation step {self.op}: {name} {v} is not in [0, 1]")

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "prob": round(self.prob, 6), "magnitude": round(self.magnitude, 6)}


@dataclass(frozen=True)
class SubPolicy:
    """Two (or more) steps applied in order."""

    steps: tuple[Step, ...]

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            hit = torch.rand(x.shape[0], generator=generator) < step.prob
            if hit.any():
                idx = hit.nonzero()[:, 0].to(x.device)
                x = x.clone()
                x[idx] = apply_op(step.op, x[idx], step.magnitude, generator)
        return x


@dataclass(frozen=True)
class Policy:
    """A set of sub-policies; each image of a batch draws one."""

    sub_policies: tuple[SubPolicy, ...] = ()

    def __len__(self) -> int:
        return len(self.sub_policies)

    def __add__(self, other: Policy) -> Policy:
        return Policy(self.sub_policies + other.sub_policies)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a (B, C, H, W) batch; returns a new tensor (or ``x`` for the empty policy)."""
        if not self.sub_policies:
            return x
        choice = torch.randint(0, len(self.sub_policies), (x.shape[0],), generator=generator)
        out = x.clone()
        for k in choice.unique().tolist():
            idx = (choice == k).nonzero()[:, 0].to(x.device)
            out[idx] = self.sub_policies[k].apply(x[idx], generator)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": POLICY_SCHEMA,
            "sub_policies": [[s.to_json() for s in sp.steps] for sp in self.sub_policies],
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "policy") -> Policy:
        """Inverse of :meth:`to_json`; malformed data raises a one-line :class:`ConfigError`."""
        try:
            if data.get("schema") != POLICY_SCHEMA:
                raise ConfigError(f"{source}: policy schema {data.get('schema')!r} is not 1")
            subs = tuple(
                SubPolicy(
                    tuple(Step(str(s["op"]), float(s["prob"]), float(s["magnitude"])) for s in sp)
                )
                for sp in data["sub_policies"]
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{source}: not a nasmed augmentation policy ({exc})") from exc
        return cls(subs)

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read policy ({exc})") from exc
        return cls.from_json(data, str(p))


def random_subpolicy(rng: random.Random, n_steps: int = 2) -> SubPolicy:
    """A sub-policy of ``n_steps`` uniformly drawn operations, probabilities and magnitudes."""
    ops = sorted(OPS)
    return SubPolicy(
        tuple(Step(rng.choice(ops), rng.random(), rng.random()) for _ in range(n_steps))
    )
