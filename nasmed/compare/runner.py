"""``run_compare(task_dir, config)``: the API behind ``nasmed compare``.

Checks every input (task, genotypes, search runs, patch, settings, output folder) before writing
anything, then::

    OUT/run.json            the comparison's settings (resume refuses changed settings, except
                            ``--arch`` / ``--search-run`` / ``--baselines`` given anew with the
                            earlier ones first: the networks, search runs and baselines added
                            are measured and trained, the finished runs reused)
    OUT/work/               the task preprocessed once, shared by every run
    OUT/genotypes/          the random genotypes drawn (random_XX.json)
    OUT/costs.json          the patch; measured params, FLOPs, step time; the baselines'
                            matched widths; epochs per network (written at the first start,
                            reused on resume, the added networks appended)
    OUT/runs/<name>/seed<k> one training run per network and seed (``nasmed train``'s files)
    OUT/estimates.json      the supernets' shared-weight Dice of every genotype (--search-run)
    OUT/compare.csv         one row per network (:mod:`nasmed.compare.report`)
    OUT/compare.json        rows, statistics and settings
    OUT/compare.png         Dice per network with its seed spread

A run is finished when its folder holds ``model.json`` and ``model.pt``; ``resume`` skips those
and continues the others from their last checkpoint, at the patch recorded in ``costs.json``.
On CPU the same settings give the same genotypes, weights and Dice (step times, and so a time
budget's epochs, are measured once and kept in ``costs.json``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from decathlon.datalist import load_task
from decathlon.errors import DatasetError
from decathlon.plan import Plan
from decathlon.preprocess import run_preprocess
from decathlon.splits import load_splits
from nasmed.compare.budget import COSTS_FILE, plan_costs, recorded_patch
from nasmed.compare.candidates import (
    Candidate,
    check_common_patch,
    load_found,
    random_candidates,
)
from nasmed.compare.config import CompareConfig
from nasmed.compare.estimate import SearchRun, check_search_run, estimates_of
from nasmed.compare.jobs import RunJob, run_jobs, run_train_config
from nasmed.compare.report import RunResult, build_rows, summarize, write_csv, write_json
from nasmed.errors import ConfigError, RunDirError
from nasmed.genotype import Genotype
from nasmed.models.spec import MODEL_FILE, WEIGHTS_FILE
from nasmed.rundir import SPLIT_SEED, read_run_info
from nasmed.runfolder import RunFolder
from nasmed.runtime import resolve_device
from nasmed.train.history import read_history
from searchspaces import SearchSpace

__all__ = ["CompareResult", "is_finished", "run_compare"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompareResult:
    """What :func:`run_compare` ends with.

    Attributes:
        out: the comparison folder.
        rows: one row per network (the columns of ``compare.csv``).
        summary: the statistics (``compare.json``'s ``summary``).
        csv_path: ``OUT/compare.csv``.
        json_path: ``OUT/compare.json``.
        png_path: ``OUT/compare.png``.
        trained: runs trained (or continued) by this call.
        skipped: finished runs found and reused.
    """

    out: Path
    rows: tuple[dict[str, Any], ...]
    summary: dict[str, Any]
    csv_path: Path
    json_path: Path
    png_path: Path
    trained: int
    skipped: int


def is_finished(run_dir: Path) -> bool:
    """A training run is finished when it wrote its weights and ``model.json`` (written last)."""
    return (run_dir / MODEL_FILE).is_file() and (run_dir / WEIGHTS_FILE).is_file()


def _read_result(run_dir: Path, seed: int) -> RunResult:
    info = json.loads((run_dir / MODEL_FILE).read_text(encoding="utf-8"))["info"]
    dice = info.get("final_val_dice")
    if not isinstance(dice, (int, float)):  # resumed after its last epoch: the history has it
        scored = [
            r["val_dice"]
            for r in read_history(run_dir / "history.csv")
            if r.get("val_dice") is not None
        ]
        dice = scored[-1] if scored else None
    return RunResult(
        seed,
        float(dice) if isinstance(dice, (int, float)) else math.nan,
        int(info["epochs"]),
        float(info.get("seconds_per_epoch") or 0.0),
        run_dir,
    )


def _resumable(run_dir: Path, epochs: int) -> bool:
    """Whether an unfinished run can continue; one killed after its last epoch's checkpoint
    but before ``model.json`` is cleared and trained again (resuming it would train nothing and
    report no timing)."""
    if not run_dir.is_dir():
        return False
    if len(read_history(run_dir / "history.csv")) >= epochs:
        log.warning("%s: trained but not saved; training it again", run_dir)
        shutil.rmtree(run_dir)
        return False
    return True


def _check_inputs(
    task_dir: str | os.PathLike[str], config: CompareConfig
) -> tuple[Any, int, SearchSpace, list[Candidate], list[SearchRun]]:
    task = load_task(task_dir)
    n = len(task.training)
    folds = min(config.folds, n)
    if folds < 2:
        raise DatasetError(
            f"{task.root / 'dataset.json'}: {n} training case(s) are too few for a validation "
            "fold; a comparison needs at least 2 (one to train on, one to validate)"
        )
    if config.fold >= folds:
        raise ConfigError(f"--fold {config.fold} is out of range: the task has {folds} folds")
    space, found = load_found(config.archs, config.space)
    runs: list[SearchRun] = []
    for path in config.search_runs:
        name, k = path.name or "search", 2
        while name in {r.name for r in runs}:
            name, k = f"{path.name}_{k}", k + 1
        runs.append(check_search_run(path, space, name))
        if int(runs[-1].settings.get("folds", folds)) != folds:
            log.warning(
                "%s: the search used %s folds, the comparison %d: its validation cases differ",
                path,
                runs[-1].settings.get("folds"),
                folds,
            )
    recorded = recorded_patch(config.out) if config.resume else None
    if recorded is not None:  # a resume trains at the recorded patch (--patch cannot change)
        _check_recorded_patch(config.out, recorded, space, config.baselines)
    elif config.patch is not None:
        check_common_patch(config.patch, space, config.baselines)
    return task, folds, space, found, runs


def _patch_divisor(space: SearchSpace, baselines: tuple[str, ...]) -> int:
    """What every side of a patch must be a multiple of (MONAI's UNet: 16)."""
    return math.lcm(space.divisor, 16 if baselines else 1)


def _check_recorded_patch(
    out: Path, patch: tuple[int, int, int], space: SearchSpace, baselines: tuple[str, ...]
) -> None:
    """Refuse a resume whose baselines cannot take the patch the comparison trains at (one
    started without baselines at a ``--patch`` that is no multiple of 16): a resume keeps the
    recorded patch for every run, and ``--patch`` cannot change on resume."""
    try:
        check_common_patch(patch, space, baselines)
    except ConfigError:
        raise RunDirError(
            f"{out}: cannot resume with --baselines {list(baselines)}: the comparison trains at "
            f"patch {list(patch)} ({COSTS_FILE}), and the baselines need every side a multiple "
            f"of {_patch_divisor(space, baselines)}; compare them in a new --out"
        ) from None


def _default_patch(
    plan: Plan, space: SearchSpace, baselines: tuple[str, ...]
) -> tuple[int, int, int]:
    """The plan's patch (multiples of 16) rounded down to what every network takes."""
    d = _patch_divisor(space, baselines)
    p = [max(d, (s // d) * d) for s in plan.patch_size]
    return (p[0], p[1], p[2])


def run_compare(
    task_dir: str | os.PathLike[str],
    config: CompareConfig,
    *,
    on_run_end: Callable[[str, int], None] | None = None,
) -> CompareResult:
    """Train and compare the networks of ``config`` on ``task_dir`` (files: see the module docs).

    Args:
        task_dir: an MSD or nnU-Net raw task folder.
        config: what to compare and how.
        on_run_end: called with ``(network name, seed)`` after each training run (a test seam:
            raising ``KeyboardInterrupt`` there simulates a kill).

    Raises:
        DatasetError: invalid task, or too few cases for a validation fold. GenotypeError /
        SpaceError: an unreadable genotype, or genotypes of different spaces. RunDirError: a
        bad search run folder, or an output folder holding another comparison (or changed
        settings on resume). ConfigError: a bad setting or a patch some network cannot take.
    """
    resolve_device(config.device)
    task, folds, space, found, search_runs = _check_inputs(task_dir, config)
    randoms = random_candidates(space, config.random, config.seed)
    settings = {
        **config.to_json(),
        "task": str(task.root.resolve()),
        "folds": folds,
        "space_name": space.name,
        "space_hash": space.content_hash(),
    }
    if config.resume:
        _check_added(config.out, settings)
    folder = RunFolder.open(
        config.out,
        "compare",
        settings,
        resume=config.resume,
        mutable=EXTENDABLE,
        inputs=(task.root, *config.archs, *config.search_runs),
        task_root=task.root,
        # the runs start once the costs are measured: a start that never got there is cleared
        complete=COSTS_FILE,
    )
    try:
        return _compare(
            folder.path, task, folds, space, found, randoms, search_runs, settings, config,
            on_run_end,
        )  # fmt: skip
    finally:
        folder.release()


#: Settings a resumed comparison may extend, with their flags: the earlier entries first, in
#: their order (the names ``found_<stem>`` and the search runs' names are given in order, so
#: they keep meaning the same network), new ones after them.
EXTENDABLE = {"archs": "--arch", "search_runs": "--search-run", "baselines": "--baselines"}


def _check_added(out: Path, settings: dict[str, Any]) -> None:
    """Refuse a resume whose ``archs`` / ``search_runs`` / ``baselines`` do not start with the
    recorded ones."""
    info = read_run_info(out) if out.is_dir() else None
    if info is None:
        return
    old = info.get("settings", {})
    for key, flag in EXTENDABLE.items():
        before, now = list(old.get(key, [])), list(settings.get(key, []))
        if now[: len(before)] != before:
            raise RunDirError(
                f"{out}: cannot resume with {flag} {now}; the comparison was started with "
                f"{before}: give those first, in that order (new ones may follow)"
            )


def _compare(
    out: Path,
    task: Any,
    folds: int,
    space: SearchSpace,
    found: list[Candidate],
    randoms: list[Candidate],
    search_runs: list[SearchRun],
    settings: dict[str, Any],
    config: CompareConfig,
    on_run_end: Callable[[str, int], None] | None,
) -> CompareResult:
    from nasmed.train.validation import validate_dice
    from nasmed.viz.compare import plot_compare
    from nasmed.viz.figure import save_png

    device = resolve_device(config.device)
    work = out / "work"
    plan = run_preprocess(
        task.root, work, workers=1, folds=folds, seed=SPLIT_SEED, progress=config.progress
    )
    split = load_splits(work / "splits.json")[config.fold]
    # a resumed comparison trains at the patch it started with (_check_recorded_patch: it fits
    # the baselines added since); a fresh one at --patch or the plan's, fitted to every network
    patch = recorded_patch(out) or config.patch or _default_patch(plan, space, config.baselines)
    for cand in randoms:
        assert isinstance(cand.arch, Genotype)
        path = out / "genotypes" / f"{cand.name}.json"
        if not path.is_file():
            cand.arch.save(path)
    randoms = [replace(c, source=f"{c.source} (genotypes/{c.name}.json)") for c in randoms]
    candidates, costs, epochs, reference = plan_costs(
        out, config, plan, patch, [*found, *randoms], device
    )
    jobs: list[RunJob] = []
    for cand in candidates:
        for seed in range(config.seeds):
            run_dir = out / "runs" / cand.name / f"seed{seed}"
            if is_finished(run_dir):
                continue
            run_config = run_train_config(config, epochs[cand.name], patch, folds, cand.width, seed)
            resume = _resumable(run_dir, epochs[cand.name])
            jobs.append(RunJob(cand.name, seed, run_dir, cand.arch, run_config, resume))
    trained, skipped = len(jobs), len(candidates) * config.seeds - len(jobs)
    bar = tqdm(
        total=len(candidates) * config.seeds,
        initial=skipped,
        desc="compare",
        unit="run",
        disable=not config.progress,
    )

    def finished(job: RunJob) -> None:
        bar.update(1)
        bar.set_postfix(network=job.name, seed=job.seed)
        if on_run_end is not None:
            on_run_end(job.name, job.seed)

    try:
        run_jobs(
            jobs,
            task_root=task.root,
            device=config.device,
            work=work,
            workers=config.jobs,
            on_done=finished,
        )
    finally:
        bar.close()
    results = {
        cand.name: [
            _read_result(out / "runs" / cand.name / f"seed{seed}", seed)
            for seed in range(config.seeds)
        ]
        for cand in candidates
    }
    log.info("%s: %d runs trained, %d finished runs reused", out, trained, skipped)

    def validate(net: Any) -> float:
        return float(
            validate_dice(
                net,
                work / "cache",
                split["val"],
                patch,
                device=device,
                num_classes=plan.num_classes,
            )["dice"]
        )

    genotypes = {c.name: c.arch for c in candidates if isinstance(c.arch, Genotype)}
    estimates = estimates_of(out, search_runs, genotypes, plan, validate, device)
    rows = build_rows(candidates, costs, epochs, results, estimates)
    agreeing: dict[str, Genotype] = {c.name: c.arch for c in found if isinstance(c.arch, Genotype)}
    found_files = {str(Path(c.source).resolve()) for c in found}
    for run in search_runs:
        if (
            run.genotype is not None
            and str((run.path / "genotype.json").resolve()) not in found_files
        ):
            agreeing[f"search_{run.name}"] = run.genotype
    summary = summarize(
        rows, space=space, genotypes=agreeing, estimates=estimates, reference=reference
    )
    for run in search_runs:
        if run.name in summary["kendall_tau"]:
            summary["kendall_tau"][run.name]["path"] = str(run.path.resolve())
    summary["patch"] = list(patch)
    summary["validation_cases"] = len(split["val"])
    csv_path = write_csv(out / "compare.csv", rows)
    json_path = write_json(out / "compare.json", rows, summary, settings)
    png_path = save_png(
        plot_compare(rows, title=f"{task.name}: {len(split['val'])} validation cases"),
        out / "compare.png",
    )
    return CompareResult(out, tuple(rows), summary, csv_path, json_path, png_path, trained, skipped)
