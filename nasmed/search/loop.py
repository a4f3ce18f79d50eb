"""``run_search(task_dir, run_dir, config)``: the API behind ``nasmed search``.

Checks every input (space, patch, task, settings, run folder) before writing anything,
preprocesses the task into ``RUN_DIR/work`` (or the ``work_dir`` given; unchanged cases are
reused), takes fold 0 of its splits, halves its training cases (weights half, architecture half,
:func:`decathlon.splits.bilevel_halves`), searches with :class:`~nasmed.search.searcher.Searcher`
and validates the argmax architecture on the fold's validation cases. It writes::

    RUN_DIR/run.json              the run's kind and settings (resume refuses changed settings
                                  but those of ``SearchConfig.MUTABLE``, time_budget included)
    RUN_DIR/plan.json             the task's plan
    RUN_DIR/history.csv           one row per epoch (+ tensorboard/)
    RUN_DIR/alphas/epoch_XXXX.json  the architecture logits after each epoch (plain JSON)
    RUN_DIR/checkpoint.pt         resume point (checkpoint kind ``search``): supernet, both
                                  optimisers, estimator, epoch, RNG states
    RUN_DIR/genotype.json         the decoded architecture (written last)

A killed run has no ``genotype.json``; ``resume=True`` continues it from ``checkpoint.pt`` and
ends with the same logits and genotype as an uninterrupted run with the same seed (on CPU).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import searchspaces
from decathlon.datalist import load_task
from decathlon.errors import DatasetError
from decathlon.splits import bilevel_halves
from decathlon.synthetic import embedded_task
from nasmed.distributed import init_distributed, is_main
from nasmed.errors import ConfigError
from nasmed.genotype import Genotype
from nasmed.memory import check_network
from nasmed.rundir import SPLIT_SEED, prepare_work
from nasmed.runfolder import RunFolder
from nasmed.runtime import resolve_device, seed_everything
from nasmed.search.config import CostTerm, SearchConfig, parse_cost_budget
from nasmed.search.ddp import make_searcher
from nasmed.search.searcher import CHECKPOINT_FILE
from nasmed.supernet import Mode, Supernet
from searchspaces import SearchSpace

__all__ = [
    "CHECKPOINT_FILE",
    "GENOTYPE_FILE",
    "MIN_CASES",
    "CostTerm",
    "SearchConfig",
    "SearchResult",
    "parse_cost_budget",
    "run_search",
]

log = logging.getLogger(__name__)

GENOTYPE_FILE = "genotype.json"
#: One validation case, one for the weights half, one for the architecture half.
MIN_CASES = 3
MAX_FOLDS = 5
#: Settings that may change on resume (a resumed search may get more or less time).
MUTABLE = SearchConfig.MUTABLE


@dataclass(frozen=True)
class SearchResult:
    """What :func:`run_search` ends with.

    Attributes:
        run_dir: the run folder.
        genotype: the found architecture.
        genotype_path: ``RUN_DIR/genotype.json``.
        history_path: ``RUN_DIR/history.csv``.
        val_dice: last validation Dice of the argmax architecture (``None`` if not validated).
        seconds: wall time of this call.
    """

    run_dir: Path
    genotype: Genotype
    genotype_path: Path
    history_path: Path
    val_dice: float | None
    seconds: float


def _check_patch(space: SearchSpace, config: SearchConfig) -> tuple[int, int, int]:
    patch = config.patch if config.patch is not None else space.default_patch
    if patch is None:
        raise ConfigError(f"search space {space.name!r} has no default_patch; pass --patch X Y Z")
    if len(patch) != 3:
        raise ConfigError(f"--patch must have 3 sides, got {list(patch)}")
    space.check_patch(tuple(int(p) for p in patch))
    return (int(patch[0]), int(patch[1]), int(patch[2]))


def run_search(
    task_dir: str | os.PathLike[str] | None,
    run_dir: str | os.PathLike[str],
    config: SearchConfig,
    *,
    resume: bool = False,
    device: str = "auto",
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> SearchResult:
    """Search an architecture for ``task_dir`` into ``run_dir`` (files: see the module docs).

    Args:
        task_dir: an MSD or nnU-Net raw task folder; ``None``: the embedded synthetic task.
        run_dir: the run folder (new, empty, or this run's with ``resume``).
        config: the search settings.
        resume: continue the run in ``run_dir`` from its checkpoint.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        work_dir: preprocessing folder to use (and reuse) instead of ``RUN_DIR/work``.
        progress: progress bars.
        on_epoch_end: ``f(epoch, history_row)`` after each epoch's checkpoint (a test seam).

    Raises:
        SpaceError: unknown or invalid space, or a patch that does not fit it.
        DatasetError: invalid task, or fewer than 3 training cases.
        ConfigError: a bad setting or device. RunDirError: the folder holds another run, or
        resume settings differ.
    """
    started_at = time.perf_counter()
    dev = resolve_device(device)
    init_distributed(dev)
    space = searchspaces.load(config.space)
    patch = _check_patch(space, config)
    check_network(  # before any data or network is made
        patch,
        batch=config.batch_size,
        device=str(dev),
        what=f"searching on --patch {' '.join(map(str, patch))} (batch {config.batch_size})",
        width=config.width,
        ops_per_edge=len(space.ops) if config.mode == Mode.MIXED else 1,
    )
    task = load_task(task_dir if task_dir is not None else embedded_task())
    n_cases = len(task.training)
    if n_cases < MIN_CASES:
        raise DatasetError(
            f"{task.root}: {n_cases} training case(s) are too few for a search; it needs at "
            f"least {MIN_CASES} (validation, weights half, architecture half)"
        )
    folds = min(MAX_FOLDS, n_cases)
    settings: dict[str, Any] = {
        **config.to_json(),
        "patch": list(patch),
        "space_hash": space.content_hash(),
        "task": str(task.root.resolve()),
        "folds": folds,
        "device": str(dev),
    }
    folder = RunFolder.open(
        run_dir,
        "search",
        settings,
        resume=resume,
        mutable=MUTABLE,
        added=SearchConfig.ADDED_SETTINGS,
        inputs=(task.root,),
        task_root=task.root,
        checkpoint=CHECKPOINT_FILE,
        complete=GENOTYPE_FILE,
    )
    run, resumed = folder.path, folder.resumed
    genotype_path = run / GENOTYPE_FILE
    if resumed and genotype_path.is_file():
        log.info("%s: the search is already complete", run)
        folder.release()
        done = Genotype.load(genotype_path)
        dice = done.search.get("final_val_dice")
        return SearchResult(
            run,
            done,
            genotype_path,
            run / "history.csv",
            float(dice) if isinstance(dice, (int, float)) else None,
            time.perf_counter() - started_at,
        )
    started = False
    try:
        work, plan, split = prepare_work(
            task.root, run, work_dir, workers=config.workers, folds=folds, fold=0, progress=progress
        )
        weight_cases, arch_cases = bilevel_halves(split["train"], seed=SPLIT_SEED)
        generator = seed_everything(config.seed)
        supernet = Supernet(
            space,
            plan.num_channels,
            plan.num_classes,
            mode=config.mode,
            tau=config.tau_start,
            width=config.width,
        )
        searcher = make_searcher(
            supernet,
            config,
            cache_dir=work / "cache",
            weight_cases=weight_cases,
            arch_cases=arch_cases,
            run_dir=run,
            device=dev,
            patch=patch,
            in_channels=plan.num_channels,
            out_channels=plan.num_classes,
            generator=generator,
            validate=_make_validate(work / "cache", split["val"], patch, dev, plan.num_classes),
            progress=progress,
            on_epoch_end=on_epoch_end,
        )
        log.info(
            "search %s on %s: %d weights cases, %d architecture cases, %d validation cases; "
            "space %s (10^%.1f distinct networks), patch %s, mode %s",
            run,
            task.name,
            len(weight_cases),
            len(arch_cases),
            len(split["val"]),
            space.name,
            len(str(space.distinct_size())) - 1,
            "x".join(map(str, patch)),
            config.mode.value,
        )
        started = True
        val_dice = searcher.fit(resume=resumed)
    except BaseException:
        if not started:
            folder.discard()
        folder.release()
        raise
    search_info = {
        **{k: v for k, v in settings.items() if k not in ("workers", "device", "space_hash")},
        "task_name": task.name,
        "weight_cases": weight_cases,
        "arch_cases": arch_cases,
        "val_cases": split["val"],
        "final_val_dice": val_dice,
    }
    genotype = searcher.argmax_genotype(seed=config.seed, search=search_info)
    if is_main():
        genotype.save(genotype_path)
    folder.release()
    return SearchResult(
        run,
        genotype,
        genotype_path,
        run / "history.csv",
        val_dice,
        time.perf_counter() - started_at,
    )


def _make_validate(
    cache_dir: Path, cases: list[str], patch: tuple[int, int, int], device: Any, classes: int
) -> Any:
    from nasmed.train.validation import validate_dice

    def validate(net: Any) -> dict[str, Any]:
        return validate_dice(net, cache_dir, cases, patch, device=device, num_classes=classes)

    return validate
