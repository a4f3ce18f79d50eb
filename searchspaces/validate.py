"""Validation of a :class:`~searchspaces.schema.SearchSpace`: every field checked on
construction, each failure one line naming the space and the field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from searchspaces.errors import SpaceError
from searchspaces.ops import known_ops

if TYPE_CHECKING:
    from searchspaces.schema import SearchSpace

__all__ = ["ACTS", "NORMS", "check_patch", "fail", "plain", "validate"]

NORMS = ("instance", "batch")
ACTS = ("leakyrelu", "relu", "elu")


def fail(where: str, message: str) -> SpaceError:
    return SpaceError(f"search space {where}: {message}")


def plain(value: Any) -> Any:
    """Tuples as lists, for messages that quote the YAML."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


def validate(space: SearchSpace) -> None:
    """Check every field of ``space`` (called on construction).

    Raises:
        SpaceError: one line naming the space and the field.
    """
    where = space.source or repr(space.name)
    if not isinstance(space.name, str) or not space.name:
        raise fail(where, "'name' must be a non-empty string")
    for key, low in (("levels", 1), ("cells_per_level", 1), ("nodes", 1)):
        value = getattr(space, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise fail(where, f"{key!r} must be an integer >= {low}, got {value!r}")
    if space.levels > 8:
        raise fail(where, f"'levels' must be at most 8, got {space.levels}")
    _check_channels(space, where)
    k = space.inputs_per_node
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= space.nodes:
        raise fail(
            where, f"'inputs_per_node' must be an integer in 1..nodes ({space.nodes}), got {k!r}"
        )
    _check_ops(space, where)
    if space.norm not in NORMS:
        raise fail(where, f"unknown norm {space.norm!r}; valid: {', '.join(NORMS)}")
    if space.act not in ACTS:
        raise fail(where, f"unknown act {space.act!r}; valid: {', '.join(ACTS)}")
    if space.stem_stride not in (1, 2):
        raise fail(where, f"'stem_stride' must be 1 or 2, got {space.stem_stride!r}")
    if space.stem_blocks not in (0, 1, 2):
        raise fail(where, f"'stem_blocks' must be 0, 1 or 2, got {space.stem_blocks!r}")
    if space.stem_blocks == 0 and space.stem_stride != 2:
        raise fail(where, "'stem_blocks' 0 (no full-resolution stage) needs stem_stride 2")
    if space.head_kernel not in (2, 3):
        raise fail(where, f"'head_kernel' must be 2 or 3, got {space.head_kernel!r}")
    if space.head_kernel != 2 and space.stem_blocks != 0:
        raise fail(where, "'head_kernel' applies to the transposed head of 'stem_blocks: 0' only")
    if not isinstance(space.preact, bool):
        raise fail(where, f"'preact' must be true or false, got {space.preact!r}")
    _check_macro(space, where)
    _check_fixed_levels(space, where)
    if space.default_patch is not None:
        check_patch(space, space.default_patch)


def _check_macro(space: SearchSpace, where: str) -> None:
    opts = space.stride_options
    if not isinstance(opts, tuple):
        raise fail(where, f"'stride_options' must be a list of stride lists, got {opts!r}")
    for opt in opts:
        if (
            not isinstance(opt, tuple)
            or len(opt) not in (2, 3)
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in opt)
            or not set(opt) <= {1, 2}
            or 2 not in opt
        ):
            raise fail(
                where,
                f"'stride_options' entry {plain(opt)} must list 2 or 3 per-axis strides, "
                "each 1 or 2, at least one 2 (e.g. [2, 2, 1])",
            )
    if len({len(o) for o in opts}) > 1:
        raise fail(where, f"'stride_options' mix 2D and 3D strides: {plain(opts)}")
    if len(set(opts)) != len(opts):
        raise fail(where, f"'stride_options' lists a stride twice: {plain(opts)}")
    widths = space.width_options
    if not isinstance(widths, tuple) or not all(
        isinstance(w, int | float) and not isinstance(w, bool) and 0 < w <= 4 for w in widths
    ):
        raise fail(where, f"'width_options' must be multipliers in (0, 4], got {plain(widths)}")
    for level in range(space.levels + 1):
        chans = [space.channels(w)[level] for w in widths]
        if len(set(chans)) != len(chans):
            raise fail(
                where,
                f"'width_options' {plain(widths)} give level {level} the same channels "
                f"twice ({chans}); use multipliers further apart",
            )


def _check_fixed_levels(space: SearchSpace, where: str) -> None:
    k = space.fixed_levels
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < space.levels:
        raise fail(
            where,
            f"'fixed_levels' must be an integer in 0..levels-1 ({space.levels - 1}), got {k!r}",
        )
    if k and space.has_macro:
        raise fail(
            where,
            "'fixed_levels' cannot be combined with 'stride_options' / 'width_options' "
            "(macro choices need every level searched); drop one of them",
        )


def _check_channels(space: SearchSpace, where: str) -> None:
    base, cap, growth = space.base_channels, space.max_channels, space.channel_growth
    if not isinstance(base, int) or isinstance(base, bool) or base < 1:
        raise fail(where, f"'base_channels' must be a positive integer, got {base!r}")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < base):
        raise fail(
            where,
            f"'max_channels' must be an integer >= base_channels ({base}), got {cap!r}",
        )
    if not isinstance(growth, int | float) or isinstance(growth, bool) or growth < 1:
        raise fail(where, f"'channel_growth' must be a number >= 1, got {growth!r}")
    if space.stem_stride == 2 and base < 2:
        raise fail(where, "'base_channels' must be >= 2 with stem_stride 2")


def _check_ops(space: SearchSpace, where: str) -> None:
    valid = known_ops()
    if not space.ops:
        raise fail(where, "'ops' must name at least one operation")
    for op in space.ops:
        if op not in valid:
            raise fail(where, f"unknown operation {op!r} in 'ops'; valid: {', '.join(valid)}")
    if len(set(space.ops)) != len(space.ops):
        raise fail(where, f"'ops' lists an operation twice: {list(space.ops)}")
    if set(space.ops) == {"zero"}:
        raise fail(where, "'ops' must hold an operation other than 'zero'")


def check_patch(space: SearchSpace, patch: Sequence[int]) -> tuple[int, ...]:
    """Return ``patch`` as a tuple, or raise :class:`SpaceError` suggesting the nearest fit."""
    where = space.source or repr(space.name)
    sides = tuple(patch)
    if not sides or not all(isinstance(p, int) and p > 0 for p in sides):
        raise fail(where, f"a patch must be positive integers, got {list(sides)}")
    if space.stride_options:
        return _check_bottleneck(space, where, _check_axis_patch(space, where, sides))
    d = space.divisor
    if all(p % d == 0 for p in sides):
        return _check_bottleneck(space, where, sides)
    nearest = [max(d, round(p / d) * d) for p in sides]
    raise fail(
        where,
        f"patch {list(sides)} does not fit: every side must be divisible by {d} "
        f"(stem stride {space.stem_stride} x 2^{space.levels} levels); nearest valid patch: "
        f"{' '.join(str(p) for p in nearest)}",
    )


def _check_bottleneck(space: SearchSpace, where: str, sides: tuple[int, ...]) -> tuple[int, ...]:
    """Refuse a patch whose bottleneck is a single voxel: a norm of one value per channel
    cannot train (torch raises deep inside the first step)."""
    divs = space.axis_divisors() if space.stride_options else (space.divisor,) * len(sides)
    if math.prod(p // d for p, d in zip(sides, divs)) > 1:
        return sides
    bigger = " ".join(str(2 * d) for d in divs)
    raise fail(
        where,
        f"patch {list(sides)} leaves a bottleneck of one voxel ({space.levels} levels below "
        f"a stride-{space.stem_stride} stem), where the {space.norm} norm cannot train; use a "
        f"larger patch, e.g. {bigger}",
    )


def _check_axis_patch(space: SearchSpace, where: str, sides: tuple[int, ...]) -> tuple[int, ...]:
    divs = space.axis_divisors()
    if len(sides) != len(divs):
        raise fail(
            where,
            f"patch {list(sides)} has {len(sides)} sides; the space's stride_options have "
            f"{len(divs)} axes",
        )
    if all(p % d == 0 for p, d in zip(sides, divs)):
        return sides
    nearest = [max(d, round(p / d) * d) for p, d in zip(sides, divs)]
    raise fail(
        where,
        f"patch {list(sides)} does not fit: the sides must be divisible by {list(divs)} "
        f"(stem stride {space.stem_stride} x the largest stride of each axis over "
        f"{space.levels} levels); nearest valid patch: {' '.join(str(p) for p in nearest)}",
    )
