"""Train a comparison's runs: one after another, or ``workers`` at a time in worker processes.

A comparison is dozens of independent training runs (networks x seeds), each writing its own run
folder, so they can share the machine: ``nasmed compare --jobs N`` trains N at once, each in a
spawned process with ``threads // N`` torch threads. Every run is the same call to
:func:`nasmed.training.train` with the same :class:`TrainConfig` whichever way it is run, and
resumes from its checkpoints the same way.

Python's :class:`concurrent.futures.ProcessPoolExecutor` does the scheduling; what is written by
hand here is only the per-run thread count, the data loader's start method in a worker, and the
cancelling of the queued runs when one fails.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nasmed.genotype import Genotype

if TYPE_CHECKING:
    from nasmed.compare.config import CompareConfig
    from nasmed.train.config import TrainConfig

__all__ = ["RunJob", "run_jobs", "run_train_config", "threads_per_job", "train_one"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunJob:
    """One training run of a comparison: which network, which seed, where, and how."""

    name: str
    seed: int
    run_dir: Path
    arch: Genotype | str
    config: TrainConfig
    resume: bool


def run_train_config(
    config: CompareConfig,
    epochs: int,
    patch: tuple[int, int, int],
    folds: int,
    width: float,
    seed: int,
) -> TrainConfig:
    """The training settings of one run of the comparison ``config`` (validated at its end)."""
    from nasmed.train.config import TrainConfig

    return TrainConfig(
        epochs=epochs,
        patch=patch,
        fold=config.fold,
        folds=folds,
        width=width,
        optimizer=config.optimizer,  # type: ignore[arg-type]
        lr=config.lr,
        batch_size=config.batch_size,
        steps_per_epoch=config.steps_per_epoch,
        val_every=epochs,
        seed=seed,
        amp=config.amp,
    )


def threads_per_job(workers: int, threads: int | None = None) -> int:
    """The torch threads each of ``workers`` concurrent runs gets: an equal share, at least 1."""
    return max(1, (threads or torch.get_num_threads()) // max(1, workers))


def _train(
    job: RunJob, task_root: Path, device: str, work: Path, threads: int, start_method: str
) -> None:
    # a spawned worker's default start method is "spawn": its loader would start its workers
    # by spawning too, each re-importing torch every epoch (epochs of 13-16 s instead of 4 s,
    # measured on 2 cores, 8 Dec 2026); give it the parent's default (fork on Linux), as a run
    # of ``nasmed train`` has
    multiprocessing.set_start_method(start_method, force=True)
    torch.set_num_threads(threads)
    train_one(job, task_root=task_root, device=device, work=work)


def train_one(job: RunJob, *, task_root: Path, device: str, work: Path) -> None:
    """Train one job in this process, with this process's threads."""
    from nasmed.training import train

    train(
        task_root,
        job.arch,
        job.run_dir,
        job.config,
        resume=job.resume,
        device=device,
        work_dir=work,
        progress=False,
    )


def run_jobs(
    jobs: Sequence[RunJob],
    *,
    task_root: Path,
    device: str,
    work: Path,
    workers: int = 1,
    on_done: Callable[[RunJob], None] | None = None,
) -> None:
    """Train every job; ``on_done(job)`` in this process after each one finishes.

    With ``workers > 1`` the jobs run in that many spawned processes (at most one per job); the
    first failure cancels the runs not yet started, waits for the running ones, and is raised.
    """
    done = on_done or (lambda job: None)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            train_one(job, task_root=task_root, device=device, work=work)
            done(job)
        return
    workers = min(workers, len(jobs))
    threads = threads_per_job(workers)
    log.info("training %d runs, %d at a time (%d threads each)", len(jobs), workers, threads)
    context = multiprocessing.get_context("spawn")
    method = multiprocessing.get_start_method()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: dict[Future[None], RunJob] = {
            pool.submit(_train, job, task_root, device, work, threads, method): job for job in jobs
        }
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                done(job)
