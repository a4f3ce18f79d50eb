"""The candidate-operation registry: ``@register_op(name)``, ``create_op(name, ...)``.

Every operation is an ``nn.Module`` class with the constructor
``(spatial_dims, in_channels, out_channels, norm, act)`` and a classmethod ``cost`` declaring its
parameters, FLOPs per output voxel and activation bytes per output voxel, so the search can be
cost-aware without running anything (like MONAI DiNTS' ``ram_cost``, but for all three). With
``norm`` and ``act`` ``None`` an operation is built bare (convolutions only, for pre-activation
cells); ``cost(..., normed=False)`` declares that form. Measured costs are in
:mod:`nasmed.ops.profile`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from torch import nn

from searchspaces.ops import declare_op

__all__ = ["CandidateOp", "OpCost", "create_op", "list_ops", "op_class", "op_cost", "register_op"]


@dataclass(frozen=True)
class OpCost:
    """Declared cost of one operation instance.

    Attributes:
        params: number of parameters.
        flops: floating-point operations per output voxel (a multiply-add counts as 2).
        act_bytes: bytes of activations kept for the backward pass per output voxel (float32).
    """

    params: int
    flops: float
    act_bytes: float

    def __add__(self, other: OpCost) -> OpCost:
        return OpCost(
            self.params + other.params, self.flops + other.flops, self.act_bytes + other.act_bytes
        )


class CandidateOp(Protocol):
    """What a registered operation class provides."""

    is_zero: ClassVar[bool]
    raw_input: ClassVar[bool]  # a pre-activation cell passes it the raw state (identity, zero)

    def __call__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: str | None,
        act: str | None,
    ) -> nn.Module: ...

    def cost(
        self, spatial_dims: int, in_channels: int, out_channels: int, *, normed: bool = True
    ) -> OpCost: ...


_REGISTRY: dict[str, type[nn.Module]] = {}
T = TypeVar("T", bound=type[nn.Module])


def register_op(name: str, description: str = "") -> Callable[[T], T]:
    """Class decorator adding an operation to the registry (and to the spaces' vocabulary).

    The class needs ``__init__(spatial_dims, in_channels, out_channels, norm, act)`` and a
    classmethod ``cost(spatial_dims, in_channels, out_channels) -> OpCost``.
    """

    def decorate(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"operation {name!r} is already registered")
        if not callable(getattr(cls, "cost", None)):
            raise TypeError(f"operation {name!r} must define a classmethod cost(...)")
        _REGISTRY[name] = cls
        declare_op(name, description or (cls.__doc__ or name).strip().splitlines()[0])
        return cls

    return decorate


def list_ops() -> list[str]:
    """Names of every registered operation, in registration order."""
    return list(_REGISTRY)


def op_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown operation {name!r}; registered: {', '.join(_REGISTRY)}") from None


def create_op(
    name: str,
    spatial_dims: int = 3,
    *,
    in_channels: int,
    out_channels: int,
    norm: str | None = "instance",
    act: str | None = "leakyrelu",
    bare: bool = False,
) -> nn.Module:
    """Build the operation ``name`` (see :func:`list_ops`).

    ``bare`` (or ``norm=act=None``): its convolutions only, for pre-activation cells.
    """
    cls = op_class(name)
    if bare:
        norm = act = None
    return cls(spatial_dims, in_channels, out_channels, norm, act)


def op_cost(
    name: str, spatial_dims: int = 3, *, in_channels: int, out_channels: int, normed: bool = True
) -> OpCost:
    """Declared cost of the operation ``name`` with these channels (``normed=False``: bare)."""
    cls: Any = op_class(name)
    if normed:
        cost: OpCost = cls.cost(spatial_dims, in_channels, out_channels)
    else:
        cost = cls.cost(spatial_dims, in_channels, out_channels, normed=False)
    return cost
