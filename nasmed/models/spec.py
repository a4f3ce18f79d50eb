"""``model.json``: everything needed to rebuild a trained network and its preprocessing.

Plain JSON, read without pickle: the architecture (a baseline name, or the genotype itself, so a
run folder is self-contained), channels, classes, width, deep supervision, the training patch,
the plan (target spacing, normalisation, labels, modalities) and a few facts about the run. In
memory the plan is a :class:`~decathlon.plan.Plan` and the genotype a
:class:`~nasmed.genotype.Genotype` (typed records); on disk they are their plain-JSON forms,
as before.
Together with ``model.pt`` (a state dict, ``torch.load(weights_only=True)``) it is a model.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from decathlon.fsutil import atomic_write_json
from decathlon.paths import why_unusable
from decathlon.plan import Plan
from nasmed.errors import ConfigError, GenotypeError, RunDirError
from nasmed.genotype import Genotype
from nasmed.models.factory import MAX_WIDTH
from nasmed.models.nnunet import is_nnunet_arch
from nasmed.weights import check_finite, load_weights_file

__all__ = ["MODEL_FILE", "MODEL_SPEC_VERSION", "WEIGHTS_FILE", "ModelSpec", "load_model"]

MODEL_SPEC_VERSION = 1
MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.pt"


def _finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON has neither): a
    run's informational numbers (a validation Dice of NaN, a time per epoch of a run that
    trained no epoch) must not keep its model.json from being written."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


@dataclass(frozen=True)
class ModelSpec:
    """A trained network's recipe.

    Attributes:
        arch: ``"unet"``, ``"dynunet"``, ``"genotype"`` or ``nnunet:PLANS.json:CONFIG``.
        in_channels: image channels.
        out_channels: classes, background included.
        patch: the training patch (also the sliding window).
        plan: the task's plan (as in ``plan.json``): spacing, normalisation, labels.
        genotype: the genotype when ``arch == "genotype"``.
        width: channel multiplier.
        deep_supervision: trained with deep supervision (inference uses the full output).
        info: facts about the run (epochs, best validation Dice, ...), plain JSON.
        version: the format version.
    """

    arch: str
    in_channels: int
    out_channels: int
    patch: tuple[int, int, int]
    plan: Plan
    genotype: Genotype | None = None
    width: float = 1.0
    deep_supervision: bool = False
    info: dict[str, Any] = field(default_factory=dict, compare=False)
    version: int = MODEL_SPEC_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.plan, Plan):
            raise TypeError(f"ModelSpec.plan must be a Plan, got {type(self.plan).__name__}")
        if self.genotype is not None and not isinstance(self.genotype, Genotype):
            raise TypeError(
                f"ModelSpec.genotype must be a Genotype, got {type(self.genotype).__name__}"
            )
        if (self.arch == "genotype") != (self.genotype is not None):
            raise ValueError("ModelSpec: a genotype goes with arch 'genotype', and only with it")

    @property
    def spacing(self) -> tuple[float, float, float]:
        """The voxel spacing the network sees (the plan's target spacing)."""
        s = self.plan.target_spacing
        return (float(s[0]), float(s[1]), float(s[2]))

    def load_plan(self) -> Plan:
        """The plan (kept for callers of the dict era; the same as :attr:`plan`)."""
        return self.plan

    def arch_value(self) -> str | Genotype:
        """What :func:`~nasmed.models.factory.build_model` takes as ``arch``."""
        return self.genotype if self.genotype is not None else self.arch

    def build(self) -> nn.Module:
        """A fresh network of this recipe (untrained weights)."""
        from nasmed.models.factory import build_model

        return build_model(
            self.arch_value(),
            self.in_channels,
            self.out_channels,
            width=self.width,
            deep_supervision=self.deep_supervision,
            patch=self.patch,
            spacing=self.spacing,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "version": self.version,
            "arch": self.arch,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "width": self.width,
            "deep_supervision": self.deep_supervision,
            "patch": list(self.patch),
            "genotype": self.genotype.to_dict() if self.genotype is not None else None,
            "plan": self.plan.to_json(),
            "info": _finite_or_none(self.info),
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str = MODEL_FILE) -> ModelSpec:
        """Inverse of :meth:`to_json`.

        Raises:
            ConfigError: missing or malformed fields (the message names ``source``).
        """
        try:
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if int(data["version"]) != MODEL_SPEC_VERSION:
                raise ValueError(f"version {data['version']} is not {MODEL_SPEC_VERSION}")
            arch = str(data["arch"])
            if arch not in ("unet", "dynunet", "genotype") and not is_nnunet_arch(arch):
                raise ValueError(f"unknown arch {arch!r}")
            if arch == "genotype" and not isinstance(data.get("genotype"), dict):
                raise ValueError("arch 'genotype' needs the 'genotype' object")
            patch = tuple(int(p) for p in data["patch"])
            if len(patch) != 3 or min(patch) < 1:
                raise ValueError(f"patch must have 3 sides of at least 1 voxel, got {list(patch)}")
            width = float(data.get("width", 1.0))
            if not 0 < width <= MAX_WIDTH:
                raise ValueError(f"width must be in (0, {MAX_WIDTH:g}], got {width:g}")
            plan = Plan.from_json(data["plan"])
            genotype = (
                Genotype.from_dict(data["genotype"], source=f"{source} genotype")
                if arch == "genotype"
                else None
            )
            return cls(
                arch=arch,
                in_channels=int(data["in_channels"]),
                out_channels=int(data["out_channels"]),
                patch=(patch[0], patch[1], patch[2]),
                plan=plan,
                genotype=genotype,
                width=width,
                deep_supervision=bool(data.get("deep_supervision", False)),
                info=dict(data.get("info") or {}),
            )
        except GenotypeError as exc:
            raise ConfigError(f"{source}: not a valid model file ({exc})") from None
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            raise ConfigError(f"{source}: not a valid model file ({what})") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically; returns the path."""
        atomic_write_json(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelSpec:
        """Read a ``model.json`` (or the one in a run folder).

        Raises:
            RunDirError: the file is missing or not JSON; ConfigError: not a valid model file.
        """
        p = Path(path)
        if p.is_dir():
            p = p / MODEL_FILE
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunDirError(
                f"{p}: model file not found; is this a finished `nasmed train` run folder?"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{p}: unreadable model file ({exc})") from None
        except (UnicodeDecodeError, RecursionError) as exc:
            why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "nested too deeply"
            raise RunDirError(f"{p}: not a model file ({why})") from None
        return cls.from_json(data, source=str(p))


def load_model(
    model_dir: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[ModelSpec, nn.Module]:
    """The spec and the trained network (eval mode) of a run folder.

    Raises:
        RunDirError: ``model.json`` or ``model.pt`` is missing or unreadable, or the weights do
            not fit the network.
    """
    folder = Path(model_dir)
    spec = ModelSpec.load(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise RunDirError(f"{weights}: weights {why_unusable(weights)}; did the training finish?")
    state = load_weights_file(weights, map_location=map_location)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunDirError(f"{weights}: not a state dict of tensors (a foreign file?)")
    check_finite(state, weights)
    net = spec.build()
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunDirError(
            f"{weights}: weights do not fit {folder / MODEL_FILE} ({first})"
        ) from None
    net.eval()
    return spec, net
