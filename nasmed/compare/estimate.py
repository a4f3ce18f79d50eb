"""The supernet's shared-weight estimate of an architecture (Sciuto et al. 2019).

A search run folder holds the supernet's weights (``checkpoint.pt``), its settings
(``run.json``) and the task's plan (``plan.json``). :func:`load_search_run` rebuilds the
supernet from them; :func:`shared_weight_dice` scores genotypes with those shared weights, each
run as :class:`~nasmed.search.searcher.ArgmaxChild` (the supernet restricted to the genotype,
nothing copied or trained), with the same validation function the stand-alone runs use. The
Kendall tau between these estimates and the stand-alone Dice says whether ranking by the
supernet can work at all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import searchspaces
from decathlon.fsutil import atomic_write_json
from decathlon.plan import Plan
from nasmed.errors import RunDirError
from nasmed.genotype import Genotype, genotype_space
from nasmed.rundir import read_run_info
from nasmed.search.searcher import CHECKPOINT_FILE, ArgmaxChild
from nasmed.supernet import Supernet
from nasmed.train.checkpoint import load_checkpoint
from searchspaces import SearchSpace

log = logging.getLogger(__name__)

__all__ = [
    "ESTIMATES_FILE",
    "SearchRun",
    "check_search_run",
    "estimates_of",
    "load_supernet",
    "shared_weight_dice",
]


@dataclass(frozen=True)
class SearchRun:
    """A search run folder, checked.

    Attributes:
        path: the folder.
        name: a short name for tables (the folder's name, made unique).
        settings: ``run.json``'s settings.
        genotype: its ``genotype.json`` (``None`` for an unfinished search).
    """

    path: Path
    name: str
    settings: dict[str, Any]
    genotype: Genotype | None


def check_search_run(path: Path, space: SearchSpace, name: str) -> SearchRun:
    """Check that ``path`` is a search run of ``space`` with a supernet checkpoint.

    Raises:
        RunDirError: not a search run folder, no checkpoint, or a search of another space.
    """
    info = read_run_info(path)
    if info is None or info.get("kind") != "search":
        raise RunDirError(f"{path}: --search-run is not a search run folder (no search run.json)")
    if not (path / CHECKPOINT_FILE).is_file():
        raise RunDirError(f"{path / CHECKPOINT_FILE}: --search-run has no supernet checkpoint")
    if not (path / "plan.json").is_file():
        raise RunDirError(f"{path / 'plan.json'}: --search-run has no plan")
    settings = dict(info.get("settings", {}))
    if settings.get("space_hash") != space.content_hash():
        raise RunDirError(
            f"{path}: the search ran on space {settings.get('space')!r} (hash "
            f"{str(settings.get('space_hash'))[:12]}), not on the compared space {space.name!r} "
            f"(hash {space.content_hash()[:12]})"
        )
    geno = path / "genotype.json"
    return SearchRun(path, name, settings, Genotype.load(geno) if geno.is_file() else None)


def load_supernet(run: SearchRun, device: torch.device) -> tuple[Supernet, Plan]:
    """The supernet of ``run`` with its trained weights, in eval mode, and the search's plan."""
    if run.genotype is not None:  # it carries a space file's definition: no path to resolve
        space = genotype_space(run.genotype)
    else:
        space = searchspaces.load(str(run.settings["space"]))
    plan = Plan.load(run.path / "plan.json")
    supernet = Supernet(
        space,
        plan.num_channels,
        plan.num_classes,
        mode=str(run.settings.get("mode", "sampled")),
        width=float(run.settings.get("width", 1.0)),
    )
    state = load_checkpoint(run.path / CHECKPOINT_FILE, map_location=device, kind="search")
    supernet.load_state_dict(state["model"])
    return supernet.to(device).eval(), plan


def shared_weight_dice(
    supernet: Supernet,
    genotypes: Sequence[Genotype],
    validate: Callable[[nn.Module], float],
) -> list[float]:
    """Validation Dice of each genotype run with the supernet's shared weights."""
    out = []
    with torch.no_grad():
        for genotype in genotypes:
            out.append(float(validate(ArgmaxChild(supernet, genotype).eval())))
    return out


#: the cache of :func:`estimates_of` in a comparison folder
ESTIMATES_FILE = "estimates.json"


def estimates_of(
    out: Path,
    runs: list[SearchRun],
    genotypes: dict[str, Genotype],
    plan: Plan,
    validate: Callable[[Any], float],
    device: torch.device,
) -> dict[str, dict[str, float]]:
    """Each search run's shared-weight Dice of every genotype, cached in ``out/estimates.json``
    (per run; only the genotypes missing from the cache are validated)."""
    path = out / ESTIMATES_FILE
    cached: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    result: dict[str, dict[str, float]] = {}
    for run in runs:
        entry = cached.get(run.name)
        if entry is not None and entry.get("path") != str(run.path.resolve()):
            entry = None
        missing = [n for n in genotypes if entry is None or n not in entry["dice"]]
        if missing:  # a new search run, or networks added on resume
            supernet, search_plan = load_supernet(run, device)
            if (search_plan.num_channels, search_plan.num_classes) != (
                plan.num_channels,
                plan.num_classes,
            ):
                raise RunDirError(
                    f"{run.path}: the search's task has {search_plan.num_channels} channel(s) "
                    f"and {search_plan.num_classes} classes, the compared task "
                    f"{plan.num_channels} and {plan.num_classes}"
                )
            dice = shared_weight_dice(supernet, [genotypes[n] for n in missing], validate)
            known = {} if entry is None else entry["dice"]
            entry = {
                "path": str(run.path.resolve()),
                "dice": {**known, **dict(zip(missing, dice, strict=True))},
            }
            cached[run.name] = entry
            atomic_write_json(path, cached)
            log.info("%s: shared-weight Dice of %d genotypes", run.path, len(missing))
        assert entry is not None
        result[run.name] = {k: float(v) for k, v in entry["dice"].items()}
    return result
