"""``--arch nnunet:PLANS.json:CONFIG``: nnU-Net v2's own network as a nasmed baseline.

The plans file's configuration names the network (``architecture.network_class_name``,
``arch_kwargs``, ``_kw_requires_import``); nnU-Net's own ``get_network_from_plans`` builds it,
with nasmed's channels and classes. nnU-Net's U-Nets return a list of deep-supervision outputs
(highest resolution first) whenever ``decoder.deep_supervision`` is set; :class:`NnUNetBaseline`
adapts that to nasmed's convention: ``(full, aux 1, ...)`` in training mode with deep
supervision, the full-resolution logits otherwise. Every patch side must be a multiple of the
product of the configuration's strides on that axis (:func:`nnunet_divisor` gives the largest).

The run's ``model.json`` records the architecture as ``nnunet:<absolute plans path>:CONFIG``:
the plans file must stay where it is for ``nasmed predict`` to rebuild the network.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasmed.errors import ConfigError

__all__ = [
    "NNUNET_PREFIX",
    "NnUNetBaseline",
    "is_nnunet_arch",
    "load_plans_file",
    "make_nnunet",
    "nnunet_architecture",
    "nnunet_divisor",
    "parse_nnunet_arch",
]

NNUNET_PREFIX = "nnunet:"
_INSTALL = (
    "pip install 'nasmed[nnunet]' && pip install --no-deps nnunetv2==2.8.1 "
    "dynamic-network-architectures==0.4.4 (see docs/export.md)"
)


def is_nnunet_arch(arch: object) -> bool:
    """Whether ``arch`` is an ``nnunet:PLANS.json:CONFIG`` string."""
    return isinstance(arch, str) and arch.startswith(NNUNET_PREFIX)


def _split(text: str) -> tuple[Path, str]:
    body = text[len(NNUNET_PREFIX) :]
    path, sep, config = body.rpartition(":")
    if not sep or not path or not config:
        raise ConfigError(f"--arch {text!r}: expected nnunet:PLANS.json:CONFIGURATION")
    return Path(path), config


def load_plans_file(path: Path) -> dict[str, Any]:
    """The JSON object of an nnU-Net plans file.

    Raises:
        ConfigError: the file is missing, unreadable, or not a JSON object.
    """
    try:
        plans = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: nnU-Net plans file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable plans file ({exc})") from None
    if not isinstance(plans, dict):
        raise ConfigError(f"{path}: not an nnU-Net plans file (no JSON object)")
    return plans


def nnunet_architecture(text: str) -> dict[str, Any]:
    """The resolved configuration's ``architecture`` entry of ``nnunet:PLANS.json:CONFIG``.

    Raises:
        ConfigError: nnunetv2 is missing, the file is unreadable, the configuration or its
            architecture is missing, or it is not 3D.
    """
    path, config = _split(text)
    try:
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    except ImportError:
        raise ConfigError(f"--arch {text}: needs nnunetv2, not installed; {_INSTALL}") from None
    plans = load_plans_file(path)
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or config not in configs:
        names = ", ".join(configs) if isinstance(configs, dict) else "none"
        raise ConfigError(f"{path}: no configuration {config!r} (has {names})")
    arch = PlansManager(plans).get_configuration(config).configuration.get("architecture")
    if not isinstance(arch, dict) or "network_class_name" not in arch:
        raise ConfigError(f"{path}: configuration {config!r} has no architecture entry")
    strides = arch.get("arch_kwargs", {}).get("strides")
    if not strides or any(len(s) != 3 for s in strides):
        raise ConfigError(f"{path}: configuration {config!r} is not 3D; nasmed trains 3D networks")
    return dict(arch)


def parse_nnunet_arch(text: str) -> str:
    """Validate ``nnunet:PLANS.json:CONFIG``; returns it with the plans path made absolute."""
    nnunet_architecture(text)
    path, config = _split(text)
    return f"{NNUNET_PREFIX}{path.resolve()}:{config}"


def nnunet_divisor(text: str) -> int:
    """The largest per-axis product of the configuration's strides."""
    strides = nnunet_architecture(text)["arch_kwargs"]["strides"]
    return max(math.prod(int(s[axis]) for s in strides) for axis in range(3))


class NnUNetBaseline(nn.Module):
    """nnU-Net's network behind nasmed's output convention (see the module docstring)."""

    def __init__(self, network: nn.Module, deep_supervision: bool) -> None:
        super().__init__()
        self.network = network
        self.deep_supervision = deep_supervision

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.network(x)
        if isinstance(out, (list, tuple)):
            return tuple(out) if self.training and self.deep_supervision else out[0]
        return out


def make_nnunet(
    text: str, in_channels: int, out_channels: int, *, deep_supervision: bool = False
) -> NnUNetBaseline:
    """The network of ``nnunet:PLANS.json:CONFIG``, built by nnU-Net's get_network_from_plans."""
    arch = nnunet_architecture(text)
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    net = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch.get("_kw_requires_import", []),
        in_channels,
        out_channels,
        allow_init=True,
        deep_supervision=True,
    )
    return NnUNetBaseline(net, deep_supervision)
