"""Decoding: architecture logits -> :class:`~nasmed.genotype.Genotype`. A pure function.

The logits are plain numpy arrays, one pair per architecture key of the space::

    {"encoder": {"ops": array (E, n_ops), "inputs": array (E,)}, "reduction": {...}, ...}

Row ``r`` of both arrays is edge ``space.edges()[r]`` = ``(source, node)``. Node ``i`` keeps the
``space.kept(i)`` sources with the highest input logits (ties: the lower source), and each kept
edge takes the operation with the highest op logit (ties: the earlier op in ``space.ops``). This
is the mode of the sampling distribution the supernet draws from, since a subset's score is the
sum of its members' input logits.

The ops an edge may not choose (:func:`~nasmed.supernet.plans.op_mask`: ``zero`` where the
connectivity is chosen by ``inputs_per_node``, and on a node's only edge) are never decoded. No
node is left dead: where every kept edge of a node would decode to ``zero``, the edge whose best
other op has the highest logit takes that op.

A space with macro choices also takes ``logits[MACRO_KEY]`` (``{"stride_l1": (n,), ...,
"width_l0": (n,), ...}``, :mod:`nasmed.supernet.macro`): each level's stride and width is the
option of the highest logit (ties: the earlier option).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nasmed.genotype import CellGenotype, EdgeChoice, Genotype, NodeChoice, space_record
from nasmed.supernet.macro import MACRO_KEY, macro_logit_shapes
from nasmed.supernet.plans import op_mask
from searchspaces import SearchSpace

__all__ = ["ArchLogits", "decode"]

#: ``{key: {"ops": (E, n_ops) array, "inputs": (E,) array}}``.
ArchLogits = Mapping[str, Mapping[str, Any]]


def decode(
    logits: ArchLogits,
    space: SearchSpace,
    *,
    seed: int | None = None,
    search: Mapping[str, Any] | None = None,
    exclude_zero: bool = False,
) -> Genotype:
    """The most likely architecture under ``logits``.

    Args:
        logits: per architecture key, ``"ops"`` and ``"inputs"`` logits (array-likes).
        space: the space the logits belong to.
        seed: recorded in the genotype.
        search: search settings recorded in the genotype.
        exclude_zero: never choose the ``zero`` operation for a kept edge (DARTS' rule).

    Raises:
        ValueError: a key is missing or an array has the wrong shape.
    """
    edges = space.edges()
    n_ops = len(space.ops)
    cells = []
    for key in space.arch_keys():
        if key not in logits:
            raise ValueError(f"logits lack architecture key {key!r} of space {space.name!r}")
        ops = np.asarray(logits[key]["ops"], dtype=np.float64)
        inputs = np.asarray(logits[key]["inputs"], dtype=np.float64)
        if ops.shape != (len(edges), n_ops) or inputs.shape != (len(edges),):
            raise ValueError(
                f"logits of {key!r}: expected ops {(len(edges), n_ops)} and inputs "
                f"{(len(edges),)}, got {ops.shape} and {inputs.shape}"
            )
        ops = np.where(op_mask(space), ops, -np.inf)
        zero = space.ops.index("zero") if "zero" in space.ops else None
        if exclude_zero and zero is not None:
            ops[:, zero] = -np.inf
        nodes = []
        for node in range(1, space.nodes + 1):
            rows = [r for r, (_, i) in enumerate(edges) if i == node]
            order = np.argsort(-inputs[rows], kind="stable")[: space.kept(node)]
            kept = sorted(rows[int(k)] for k in order)
            choice = {r: int(np.argmax(ops[r])) for r in kept}
            if zero is not None and all(o == zero for o in choice.values()):
                others = np.delete(ops[kept], zero, axis=1)
                if others.shape[1]:
                    best = int(np.argmax(others.max(axis=1)))  # the edge to revive
                    o = int(np.argmax(others[best]))
                    choice[kept[best]] = o + (o >= zero)
            nodes.append(
                NodeChoice(tuple(EdgeChoice(edges[r][0], space.ops[choice[r]]) for r in kept))
            )
        cells.append(CellGenotype(key, tuple(nodes)))
    strides, widths = _decode_macro(logits, space)
    return Genotype(
        space=space.name,
        space_hash=space.content_hash(),
        cells=tuple(cells),
        seed=seed,
        search=dict(search or {}),
        strides=strides,
        widths=widths,
        space_def=space_record(space),
    )


def _decode_macro(
    logits: ArchLogits, space: SearchSpace
) -> tuple[tuple[tuple[int, ...], ...] | None, tuple[float, ...] | None]:
    shapes = macro_logit_shapes(space)
    if not shapes:
        return None, None
    if MACRO_KEY not in logits:
        raise ValueError(f"logits lack the macro choices ({MACRO_KEY!r}) of space {space.name!r}")
    macro = logits[MACRO_KEY]
    best = {}
    for name, n in shapes.items():
        if name not in macro:
            raise ValueError(f"macro logits lack {name!r} of space {space.name!r}")
        value = np.asarray(macro[name], dtype=np.float64)
        if value.shape != (n,):
            raise ValueError(f"macro logits {name!r}: expected shape {(n,)}, got {value.shape}")
        best[name] = int(np.argmax(value))
    strides = widths = None
    if space.stride_options:
        strides = tuple(
            space.stride_options[best[f"stride_l{lv}"]] for lv in range(1, space.levels + 1)
        )
    if space.width_options:
        widths = tuple(
            float(space.width_options[best[f"width_l{lv}"]]) for lv in range(space.levels + 1)
        )
    return strides, widths
