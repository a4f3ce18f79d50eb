"""The typed form of a search space: frozen dataclasses validated on construction.

A space is plain data (no torch). It fixes the macro structure of the encoder–decoder supernet
(levels, channels, cells per level, stem) and the cell DAG (nodes, inputs kept per node, candidate
operations), and whether one cell structure is searched per cell type or per layer. The format is
documented in docs/search.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from searchspaces.options import CellOutput, CellType, Sharing, Skip, Upsample
from searchspaces.validate import check_patch, fail, validate

__all__ = [
    "SCHEMA_VERSION",
    "CellOutput",
    "CellType",
    "Layer",
    "SearchSpace",
    "Sharing",
    "Skip",
    "Upsample",
]

#: Version of the YAML format (and of the content hash's canonical form).
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Layer:
    """One cell of the network.

    Attributes:
        name: unique layer name, e.g. ``encoder_l0_c0``, ``reduction_l1``, ``expansion_l2``.
        cell_type: the cell's type.
        level: resolution level of the cell's output (0 = the stem's resolution).
        key: the architecture key whose choices the cell uses: the cell type's value when
            structures are shared, the layer name when every layer is searched separately.
    """

    name: str
    cell_type: CellType
    level: int
    key: str


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space.

    Attributes:
        name: the space's name (the YAML file's stem for the shipped spaces).
        levels: number of reductions; the bottleneck is at 1/2**levels of the stem's resolution.
        base_channels: channels at level 0.
        channel_growth: channels grow by this factor per level ...
        max_channels: ... up to this cap (``None``: no cap).
        cells_per_level: normal cells after each resizing cell (and at level 0 of the encoder).
        nodes: intermediate nodes per cell.
        inputs_per_node: how many predecessors feed each node (fewer for the first nodes).
        ops: candidate operations of every edge (names known to ``searchspaces.ops``).
        sharing: one structure per cell type, or one per layer.
        norm: normalisation of every conv block (``instance`` or ``batch``).
        act: activation of every conv block (``leakyrelu``, ``relu`` or ``elu``).
        upsample: how expansion cells upsample (``transposed`` conv or ``trilinear`` + 1x1 conv).
        stem_stride: 1, or 2 to run every cell at half the input resolution (the stem
            downsamples, the head upsamples and adds a full-resolution skip).
        cell_output: how a cell combines its nodes (:class:`CellOutput`).
        preact: pre-activation operations: every source node is normalised and activated
            once (shared by its outgoing edges) and the operations are bare convolutions whose
            outputs are summed into the nodes (ResNet v2 ordering); ``identity`` edges pass the
            raw state. Otherwise each operation is conv -> norm -> act (post-activation).
        stem_blocks: conv blocks of the fixed full-resolution stem (2: nnU-Net's first stage of
            two conv -> norm -> act; the head then also gets ``stem_blocks - 1`` conv blocks
            before its 1x1x1 conv, as nnU-Net's last decoder stage). 0 (``stem_stride`` 2 only):
            no full-resolution stage, as MONAI's UNet: a stride-2 conv block from the image, and
            a transposed-conv head from level 0 straight to the logits.
        head_kernel: with ``stem_blocks`` 0, the kernel of that stride-2 transposed-conv head:
            2 (no overlap: each 2x2x2 block of logits is a linear function of one level-0
            voxel) or 3 (overlapping 3x3x3 footprints, as MONAI's UNet's top layer).
        skip: how the decoder takes the encoder's output of the same level (:class:`Skip`).
        fixed_levels: how many top levels (0..fixed_levels-1) are a fixed nnU-Net-like stage
            instead of searched cells: in the encoder one conv -> norm -> act block at the
            level's resolution (after the stride-2 block that enters it), in the decoder the
            expansion cells' entry block (upsampling), the skip, and one conv block. 0: every
            level is searched. Not with ``stride_options`` / ``width_options``.
        stride_options: macro choice of every encoder level's downsampling: the per-axis
            strides (1 or 2 each, at least one 2) a level may choose from, e.g.
            ``((2, 2, 2), (2, 2, 1))``; every level 1..levels has its own logits. Empty: every
            level halves every axis (the plan's default).
        width_options: macro choice of every level's width: channel multipliers of the plan's
            channels (e.g. ``(0.5, 1.0, 1.5)``), one choice per level 0..levels, weights shared
            (the widest kernel is sliced). Empty: the plan's channels.
        default_patch: the patch used when none is given (must fit the space).
        description: free text.
        source: where the space came from (file path or name), for error messages only.
    """

    name: str
    levels: int
    base_channels: int
    channel_growth: float = 2.0
    max_channels: int | None = None
    cells_per_level: int = 1
    nodes: int = 4
    inputs_per_node: int = 2
    ops: tuple[str, ...] = ("conv3", "p3d331", "dil3", "dw3", "conv1", "identity", "zero")
    sharing: Sharing = Sharing.CELL_TYPE
    norm: str = "instance"
    act: str = "leakyrelu"
    upsample: Upsample = Upsample.TRANSPOSED
    stem_stride: int = 1
    cell_output: CellOutput = CellOutput.CONCAT
    preact: bool = False
    stem_blocks: int = 1
    skip: Skip = Skip.SUM
    fixed_levels: int = 0
    head_kernel: int = 2
    stride_options: tuple[tuple[int, ...], ...] = ()
    width_options: tuple[float, ...] = ()
    default_patch: tuple[int, ...] | None = None
    description: str = ""
    source: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        validate(self)

    # -- derived structure -------------------------------------------------------------------

    @property
    def divisor(self) -> int:
        """Every patch side must be a multiple of this (``stem_stride * 2**levels``; with
        ``stride_options``, the largest of :meth:`axis_divisors`)."""
        if self.stride_options:
            return max(self.axis_divisors())
        return self.stem_stride * 2**self.levels

    def axis_divisors(self) -> tuple[int, ...]:
        """Per axis, what every patch side must be a multiple of so that any choice of
        ``stride_options`` fits (an axis no option halves needs only the stem's stride)."""
        if not self.stride_options:
            return ()
        dims = len(self.stride_options[0])
        return tuple(
            self.stem_stride * max(o[a] for o in self.stride_options) ** self.levels
            for a in range(dims)
        )

    @property
    def has_macro(self) -> bool:
        """Whether the space searches macro choices (strides or widths)."""
        return bool(self.stride_options or self.width_options)

    def macro_size(self) -> int:
        """Number of macro choices: stride options per level times width options per level."""
        strides = max(1, len(self.stride_options)) ** self.levels
        return strides * max(1, len(self.width_options)) ** (self.levels + 1)

    def channels(self, width: float = 1.0) -> tuple[int, ...]:
        """Channels of levels ``0..levels``, scaled by ``width``."""
        out = []
        for level in range(self.levels + 1):
            c = self.base_channels * self.channel_growth**level
            if self.max_channels is not None:
                c = min(c, self.max_channels)
            out.append(max(1, round(c * width)))
        return tuple(out)

    def stem_channels(self, width: float = 1.0) -> int:
        """Channels of the full-resolution stem/head block when ``stem_stride`` is 2."""
        return max(1, self.channels(width)[0] // 2)

    def check_patch(self, patch: Sequence[int]) -> tuple[int, ...]:
        """Return ``patch`` as a tuple, or raise :class:`SpaceError` suggesting the nearest fit
        (:func:`searchspaces.validate.check_patch`)."""
        return check_patch(self, patch)

    def layers(self) -> tuple[Layer, ...]:
        """Every searched cell of the network in forward order (none at the ``fixed_levels``)."""
        out: list[Layer] = []

        def add(name: str, cell_type: CellType, level: int) -> None:
            key = cell_type.value if self.sharing is Sharing.CELL_TYPE else name
            out.append(Layer(name, cell_type, level, key))

        for level in range(self.fixed_levels, self.levels + 1):
            if level > 0:
                add(f"reduction_l{level}", CellType.REDUCTION, level)
            for c in range(self.cells_per_level):
                add(f"encoder_l{level}_c{c}", CellType.ENCODER, level)
        for level in range(self.levels - 1, self.fixed_levels - 1, -1):
            add(f"expansion_l{level}", CellType.EXPANSION, level)
            for c in range(self.cells_per_level):
                add(f"decoder_l{level}_c{c}", CellType.DECODER, level)
        return tuple(out)

    def arch_keys(self) -> tuple[str, ...]:
        """The architecture keys (one searched cell structure each), in forward order."""
        return tuple(dict.fromkeys(layer.key for layer in self.layers()))

    def edges(self) -> tuple[tuple[int, int], ...]:
        """Candidate edges ``(source, node)`` of a cell: node ``i`` in 1..nodes, source < i.

        Node 0 is the cell's input. This order indexes the rows of the architecture logits.
        """
        return tuple((j, i) for i in range(1, self.nodes + 1) for j in range(i))

    def kept(self, node: int) -> int:
        """How many inputs node ``node`` (1-based) keeps."""
        return min(self.inputs_per_node, node)

    def cell_size(self) -> int:
        """Number of distinct structures of one cell."""
        m = len(self.ops)
        total = 1
        for i in range(1, self.nodes + 1):
            k = self.kept(i)
            total *= math.comb(i, k) * m**k
        return total

    def size(self) -> int:
        """Number of genotypes of the space, exact (see :meth:`distinct_size`)."""
        return self.cell_size() ** len(self.arch_keys()) * self.macro_size()

    def distinct_cell_size(self) -> int:
        """Number of distinct networks one cell can be (zero edges removed).

        A ``zero`` edge builds and runs nothing, so genotypes that differ only in which sources
        their zero edges point to build the same network. Each node's network is the set of its
        non-zero terms ``(source, op)`` over distinct sources: ``r`` of them (``0 <= r <= k``) are
        chosen among the node's ``i`` sources with ``m - 1`` ops each, and the remaining ``k - r``
        kept slots are zero edges (always placeable, as ``i >= k``). Hence per node
        ``sum_r C(i, r) (m - 1)**r``; without ``zero`` in the ops, ``C(i, k) m**k``. Nothing
        else is identified (e.g. an op on an all-zero node still adds its norm's bias).
        """
        m = len(self.ops)
        if "zero" not in self.ops:
            return self.cell_size()
        total = 1
        for i in range(1, self.nodes + 1):
            k = self.kept(i)
            total *= sum(math.comb(i, r) * (m - 1) ** r for r in range(k + 1))
        return total

    def distinct_size(self) -> int:
        """Number of distinct networks of the space, exact (:meth:`distinct_cell_size`)."""
        return self.distinct_cell_size() ** len(self.arch_keys()) * self.macro_size()

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (as in the YAML files)."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[f.name] = value
        return out

    def content_hash(self) -> str:
        """SHA-256 of the canonical content: everything but ``name`` and ``description``.

        Two spaces with the same hash build the same supernet and accept the same genotypes.
        Fields added after the first release are left out while at their default, so a space
        that does not use them keeps the hash its genotypes were made with.
        """
        data = self.to_dict()
        for key in ("name", "description", "default_patch"):
            data.pop(key)
        for key, default in _LATER_FIELDS.items():
            if data[key] == default:  # spaces that do not use a later option keep their hash
                data.pop(key)
        data["channel_growth"] = float(data["channel_growth"])
        if "width_options" in data:
            data["width_options"] = [float(w) for w in data["width_options"]]
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "") -> SearchSpace:
        """Build and validate a space from plain data (a parsed YAML file).

        Raises:
            SpaceError: unknown keys, wrong types, or values the space cannot use.
        """
        where = source or repr(data.get("name", "?"))
        if not isinstance(data, Mapping):
            raise fail(where, "the file must hold a mapping of fields")
        allowed = {f.name for f in fields(cls) if f.name != "source"} | {"schema_version"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise fail(where, f"unknown field(s) {unknown}; valid: {', '.join(sorted(allowed))}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise fail(where, f"schema_version {version!r} is not supported ({SCHEMA_VERSION})")
        for required in ("name", "levels", "base_channels"):
            if required not in data:
                raise fail(where, f"missing field {required!r}")
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k != "schema_version"}
        try:
            if "ops" in kwargs:
                if isinstance(kwargs["ops"], str) or not isinstance(kwargs["ops"], Sequence):
                    raise ValueError(f"'ops' must be a list, got {kwargs['ops']!r}")
                kwargs["ops"] = tuple(str(op) for op in kwargs["ops"])
            if "sharing" in kwargs:
                kwargs["sharing"] = _enum(Sharing, "sharing", kwargs["sharing"])
            if "upsample" in kwargs:
                kwargs["upsample"] = _enum(Upsample, "upsample", kwargs["upsample"])
            if "cell_output" in kwargs:
                kwargs["cell_output"] = _enum(CellOutput, "cell_output", kwargs["cell_output"])
            if "skip" in kwargs:
                kwargs["skip"] = _enum(Skip, "skip", kwargs["skip"])
            if kwargs.get("default_patch") is not None:
                patch = kwargs["default_patch"]
                if isinstance(patch, str) or not isinstance(patch, Sequence):
                    raise ValueError(f"'default_patch' must be a list, got {patch!r}")
                kwargs["default_patch"] = tuple(patch)
            if "stride_options" in kwargs:
                kwargs["stride_options"] = _nested("stride_options", kwargs["stride_options"])
            if "width_options" in kwargs:
                widths = kwargs["width_options"]
                if isinstance(widths, str) or not isinstance(widths, Sequence):
                    raise ValueError(f"'width_options' must be a list, got {widths!r}")
                kwargs["width_options"] = tuple(widths)
        except ValueError as exc:
            raise fail(where, str(exc)) from None
        return cls(**kwargs, source=source)


#: Fields added after the first release, with the default that leaves a space as it was.
_LATER_FIELDS: dict[str, Any] = {
    "cell_output": CellOutput.CONCAT.value,
    "preact": False,
    "stem_blocks": 1,
    "skip": Skip.SUM.value,
    "fixed_levels": 0,
    "head_kernel": 2,
    "stride_options": [],
    "width_options": [],
}


def _nested(key: str, value: Any) -> tuple[Any, ...]:
    """A YAML list of lists as a tuple of tuples (non-lists are left for validation)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{key!r} must be a list of lists, got {value!r}")
    return tuple(
        tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v for v in value
    )


def _enum(kind: type[Enum], key: str, value: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(str(m.value) for m in kind)
        raise ValueError(f"{key!r} must be one of {valid}, got {value!r}") from None
