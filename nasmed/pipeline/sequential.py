"""Turn a network into the flat ``nn.Sequential`` that torchgpipe partitions.

GPipe cuts a network into contiguous runs of layers, so the network must be a sequence; a U-Net's
encoder->decoder links cross any cut and travel through :mod:`torchgpipe.skip` instead: a
:class:`Stash` layer stashes its input as ``skip`` and passes it on, the matching :class:`Merge`
layer pops it and combines it with its own input (concatenation, sum or product). Every link has
its own :class:`~torchgpipe.skip.Namespace`, so the same two classes serve every level.

Supported networks:

- nasmed's genotype networks (:class:`~nasmed.models.derived.DerivedNet`): stem, stride-2 stem
  block, one layer per cell (run with its fixed plan), the level sums of the decoder, the
  full-resolution stem link and the head; with deep supervision, every auxiliary head stashes its
  logits and the head pops them, returning ``(full, aux 1, ...)`` in training mode.
- MONAI's :class:`~monai.networks.nets.UNet` and any plain ``nn.Sequential`` nesting MONAI
  :class:`~monai.networks.layers.SkipConnection` blocks: a ``SkipConnection(sub)`` becomes
  ``Stash``, the flattened ``sub``, ``Merge``.
- any module with a ``to_sequential()`` method returning such a sequence.

The layers share their modules (and so their parameters) with the network: the network's
``state_dict`` and an optimizer over its parameters keep working while the pipeline trains it.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from enum import Enum

import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import DynUNet, UNet
from torch import nn
from torchgpipe.skip import Namespace, pop, skippable, stash
from torchgpipe.skip.skippable import Skippable

from nasmed.errors import ConfigError
from nasmed.models.derived import DerivedNet, genotype_plans
from nasmed.supernet.cell import Cell, CellPlan
from searchspaces import CellType, Skip

__all__ = [
    "Merge",
    "MergeMode",
    "PlannedCell",
    "Stash",
    "aux_head_layer",
    "head_layer",
    "to_sequential",
]


#: What a skippable layer's ``forward`` is: yields stash / pop commands, returns its output.
SkipGenerator = Generator[stash | pop, torch.Tensor | None, object]


class MergeMode(str, Enum):
    """How a :class:`Merge` layer combines the popped skip tensor ``s`` with its input ``x``."""

    CAT = "cat"  # torch.cat([s, x], dim): MONAI's SkipConnection order
    ADD = "add"  # s + x
    MUL = "mul"  # s * x


@skippable(stash=["skip"])
class Stash(nn.Module):
    """Passes its input on unchanged and stashes it as ``skip`` (isolate it in a namespace)."""

    def forward(self, x: torch.Tensor) -> SkipGenerator:
        yield stash("skip", x)
        return x


@skippable(pop=["skip"])
class Merge(nn.Module):
    """Pops ``skip`` and combines it with the input.

    Args:
        mode: concatenation, sum or product.
        dim: the concatenation axis (channels).
    """

    def __init__(self, mode: MergeMode | str = MergeMode.CAT, dim: int = 1) -> None:
        super().__init__()
        self.mode = MergeMode(mode)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> SkipGenerator:
        skip = yield pop("skip")
        assert isinstance(skip, torch.Tensor)
        if self.mode is MergeMode.CAT:
            return torch.cat([skip, x], dim=self.dim)
        if self.mode is MergeMode.ADD:
            return skip + x
        return skip * x

    def extra_repr(self) -> str:
        return f"mode={self.mode.value}, dim={self.dim}"


class PlannedCell(nn.Module):
    """A derived network's cell with its fixed plan: a one-input layer.

    Args:
        cell: the cell (shared with the network).
        plan: the cell's plan (per node, the terms to compute).
    """

    def __init__(self, cell: Cell, plan: CellPlan) -> None:
        super().__init__()
        self.cell = cell
        self.plan = plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.cell(x, self.plan)
        return out


def _aux_name(level: int) -> str:
    return f"aux{level}"


_AUX_CLASSES: dict[int, type[nn.Module]] = {}
_HEAD_CLASSES: dict[tuple[int, ...], type[nn.Module]] = {}


def aux_head_layer(head: nn.Module, level: int) -> nn.Module:
    """A layer that passes its input on and stashes ``head(input)`` as ``aux<level>``."""
    if level not in _AUX_CLASSES:
        name = _aux_name(level)

        class _Aux(nn.Module):
            def __init__(self, head: nn.Module) -> None:
                super().__init__()
                self.head = head

            def forward(self, x: torch.Tensor) -> SkipGenerator:
                yield stash(name, self.head(x))
                return x

        _Aux.__name__ = _Aux.__qualname__ = f"AuxHead{level}"
        _AUX_CLASSES[level] = skippable(stash=[name])(_Aux)
    return _AUX_CLASSES[level](head)


def head_layer(head: nn.Module, aux_levels: Sequence[int] = ()) -> nn.Module:
    """The final layer: ``head(x)``, or with ``aux_levels`` ``(head(x), aux 1, ...)`` in training.

    The auxiliary logits stashed by :func:`aux_head_layer` are popped in both modes (torchgpipe
    needs every declared skip popped) and dropped in evaluation mode, as the network does.
    """
    levels = tuple(sorted(aux_levels))
    if not levels:
        return head
    if levels not in _HEAD_CLASSES:
        names = [_aux_name(level) for level in levels]

        class _Head(nn.Module):
            def __init__(self, head: nn.Module) -> None:
                super().__init__()
                self.head = head

            def forward(self, x: torch.Tensor) -> SkipGenerator:
                aux: list[torch.Tensor | None] = []
                for name in names:
                    aux.append((yield pop(name)))
                out = self.head(x)
                if self.training:
                    return (out, *aux)
                return out

        _Head.__name__ = _Head.__qualname__ = "Head"
        _HEAD_CLASSES[levels] = skippable(pop=names)(_Head)
    return _HEAD_CLASSES[levels](head)


def _isolated(layer: nn.Module, ns: Namespace) -> nn.Module:
    assert isinstance(layer, Skippable)
    return layer.isolate(ns)


def _link(mode: MergeMode = MergeMode.ADD) -> tuple[nn.Module, nn.Module]:
    ns = Namespace()
    return _isolated(Stash(), ns), _isolated(Merge(mode), ns)


def _derived_layers(model: DerivedNet) -> list[tuple[str, nn.Module]]:
    net = model.net
    plans = genotype_plans(model.genotype)
    layers: list[tuple[str, nn.Module]] = [("stem", net.stem)]
    full_link = None
    if net.up is not None:  # the full-resolution skip (none with stem_blocks 0)
        full_link = _link()
        layers.append(("stash_full", full_link[0]))
    if net.down is not None:
        layers.append(("down", net.down))
    # the decoder's skips: summed, or concatenated encoder first (as CellNetwork.forward_plans)
    skip_mode = MergeMode.CAT if net.space.skip is Skip.CONCAT else MergeMode.ADD
    merges: dict[int, nn.Module] = {}
    aux_levels = [int(level) for level in net.aux_heads]
    last_decoder = {
        layer.level: layer.name for layer in net.layers if layer.cell_type is CellType.DECODER
    }
    for level in range(net.space.fixed_levels):  # the fixed top levels' encoder blocks
        if level > 0:
            stash_layer, merges[level - 1] = _link(skip_mode)
            layers.append((f"stash_l{level - 1}", stash_layer))
        layers.append((f"top_enc_l{level}", net.top_enc[str(level)]))
    for layer in net.layers:
        if layer.cell_type is CellType.REDUCTION:
            stash_layer, merges[layer.level - 1] = _link(skip_mode)
            layers.append((f"stash_l{layer.level - 1}", stash_layer))
        cell = net.cells[layer.name]
        assert isinstance(cell, Cell)
        layers.append((layer.name, PlannedCell(cell, plans[layer.key])))
        if layer.cell_type is CellType.EXPANSION:
            layers.append((f"merge_l{layer.level}", merges.pop(layer.level)))
        if layer.level in aux_levels and last_decoder.get(layer.level) == layer.name:
            aux = aux_head_layer(net.aux_heads[str(layer.level)], layer.level)
            layers.append((f"aux_l{layer.level}", aux))
    for level in range(net.space.fixed_levels - 1, -1, -1):  # and their decoder blocks
        layers += [
            (f"top_up_l{level}", net.top_up[str(level)]),
            (f"merge_l{level}", merges.pop(level)),
            (f"top_dec_l{level}", net.top_dec[str(level)]),
        ]
        if level in aux_levels:
            aux = aux_head_layer(net.aux_heads[str(level)], level)
            layers.append((f"aux_l{level}", aux))
    if net.up is not None:
        assert full_link is not None
        layers += [("up", net.up), ("merge_full", full_link[1])]
    layers.append(("head", head_layer(net.head, aux_levels)))
    return layers


def _flatten(module: nn.Module, path: str) -> list[tuple[str, nn.Module]]:
    if type(module) is nn.Sequential:
        out: list[tuple[str, nn.Module]] = []
        for name, child in module.named_children():
            out += _flatten(child, f"{path}_{name}" if path else name)
        return out
    if isinstance(module, SkipConnection):
        ns = Namespace()
        return [
            (f"{path}_stash", _isolated(Stash(), ns)),
            *_flatten(module.submodule, f"{path}_sub"),
            (f"{path}_merge", _isolated(Merge(module.mode, module.dim), ns)),
        ]
    return [(path or type(module).__name__.lower(), module)]


def _named(layers: list[tuple[str, nn.Module]]) -> nn.Sequential:
    seq = nn.Sequential()
    for index, (name, layer) in enumerate(layers):
        seq.add_module(f"{index:02d}_{name}", layer)
    return seq


def to_sequential(model: nn.Module) -> nn.Sequential:
    """The flat ``nn.Sequential`` of ``model`` for torchgpipe (see the module docstring).

    The result computes the same function as ``model`` (same outputs, same gradients) and shares
    its parameters. Layer names are ``NN_<what>``, e.g. ``03_reduction_l1`` or ``05_stash_l0``.

    Raises:
        ConfigError: the network cannot be expressed as a sequence (e.g. ``dynunet``).
    """
    to_seq = getattr(model, "to_sequential", None)
    if callable(to_seq):
        seq = to_seq()
        if not isinstance(seq, nn.Sequential):
            raise TypeError(f"{type(model).__name__}.to_sequential() must return nn.Sequential")
        return seq
    if isinstance(model, DerivedNet):
        return _named(_derived_layers(model))
    if isinstance(model, UNet):
        return _named(_flatten(model.model, "model"))
    if type(model) is nn.Sequential:
        return _named(_flatten(model, ""))
    if isinstance(model, DynUNet):
        raise ConfigError(
            "--pipeline-devices: dynunet cannot be pipelined (its skips and deep-supervision heads "
            "are not a sequence); use --arch unet or a genotype"
        )
    raise ConfigError(
        f"--pipeline-devices: cannot pipeline a {type(model).__name__}; use --arch unet or a "
        "genotype"
    )
