"""The demo behind ``make demo`` / ``nasmed demo``: the whole path on the embedded synthetic task.

:func:`run_demo` writes (or reuses) the embedded task, runs a small architecture search on it
(space ``scnas-small``, 32^3 patches, a few epochs: a few minutes on 2 CPU cores) into
``OUT/search`` and returns what it made. Running it again on the same folder reuses the finished
search (or continues an interrupted one).

Then (``train=True``, the default) it trains the found genotype briefly on the same preprocessed
task (``OUT/train``, fold 0: the search's validation cases stay held out), segments the task's
test images (``OUT/predictions/test``; they have no labels) and the held-out validation cases
from their raw images (``OUT/predictions/validation``), and scores the latter against their
labels on the original grid (``OUT/metrics.json``, ``metrics.csv``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_open
from decathlon.outputs import check_dir, check_separate, claim_dir
from decathlon.synthetic import embedded_task
from nasmed.errors import ConfigError
from nasmed.rundir import RUN_FILE
from nasmed.search.loop import SearchConfig, SearchResult, run_search

__all__ = ["DEMO_SEARCH", "DEMO_TRAIN", "DemoResult", "run_demo"]

log = logging.getLogger(__name__)

#: The owner recorded in the demo folder's ledger (:mod:`decathlon.outputs`).
VERB = "demo"

#: The demo's search: small space, small patch, few epochs, a fast-moving architecture optimiser.
DEMO_SEARCH = SearchConfig(
    space="scnas-small",
    epochs=6,
    warmup_epochs=2,
    steps_per_epoch=12,
    patch=(32, 32, 32),
    batch_size=2,
    tau_start=5.0,
    tau_end=0.5,
    weight_optimizer="adamw",  # type: ignore[arg-type]
    weight_lr=3e-3,
    arch_lr=5e-2,
    val_every=2,
)

#: The demo's training of the found architecture (the search's patch): short, AdamW for a fast
#: start on CPU.
DEMO_TRAIN: dict[str, Any] = {
    "epochs": 4,
    "steps_per_epoch": 10,
    "batch_size": 2,
    "optimizer": "adamw",
    "lr": 3e-3,
    "val_every": 2,
}


@dataclass(frozen=True)
class DemoResult:
    """What the demo made.

    Attributes:
        out_dir: the demo folder.
        task_dir: the embedded synthetic task.
        search: the search's result (``OUT/search``).
    """

    out_dir: Path
    task_dir: Path
    search: SearchResult
    train_dir: Path | None = None
    test_predictions: tuple[Path, ...] = ()
    val_predictions: tuple[Path, ...] = ()
    metrics: dict[str, Any] | None = None

    def summary(self) -> str:
        """Where the outputs are, one line each."""
        run = self.search.run_dir
        dice = self.search.val_dice
        lines = [
            f"task:                {self.task_dir}",
            f"search run:          {run}",
            f"  genotype:          {self.search.genotype_path}",
            f"  history:           {self.search.history_path}",
            f"  logit snapshots:   {run / 'alphas'}",
            f"  tensorboard:       {run / 'tensorboard'}  (tensorboard --logdir {run})",
            f"  checkpoint:        {run / 'checkpoint.pt'}",
        ]
        if dice is not None:
            lines.append(
                f"  validation Dice of the found architecture (supernet weights): {dice:.3f}"
            )
        if self.train_dir is not None:
            preds = self.out_dir / "predictions"
            lines += [
                f"training run:        {self.train_dir}",
                f"  model:             {self.train_dir / 'model.pt'} + model.json",
                f"  history:           {self.train_dir / 'history.csv'}",
                f"test predictions:    {preds / 'test'} ({len(self.test_predictions)}, no labels)",
                f"held-out cases:      {preds / 'validation'} ({len(self.val_predictions)})",
            ]
        if self.metrics is not None:
            from nasmed.evaluate import format_summary

            lines += [
                f"metrics:             {self.out_dir / 'metrics.json'}, metrics.csv",
                "held-out cases predicted from their raw images, scored on the original grid:",
                format_summary(self.metrics),
            ]
        return "\n".join(lines)


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    device: str = "auto",
    search: SearchConfig | None = None,
    progress: bool = True,
    train: bool = True,
) -> DemoResult:
    """Search an architecture for the embedded synthetic task into ``OUT/search``, then train,
    predict and evaluate it (see the module docs).

    Args:
        out_dir: the demo folder (created; a finished demo there is reused; a folder holding
            files the demo did not write is refused).
        seed: seed of the search.
        device: torch device.
        search: search settings (default :data:`DEMO_SEARCH`, with ``seed``).
        progress: progress bars.
        train: also train the found architecture, predict and evaluate.

    Raises:
        ConfigError: ``out_dir`` is a file. OutputError: it holds files the demo did not write.
        RunDirError: ``OUT/search`` holds another run.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: demo output exists and is a file; use a folder")
    config = replace(search or DEMO_SEARCH, seed=seed)
    check_dir(out, VERB)  # a folder of results the demo did not write is refused untouched
    task = embedded_task()
    check_separate(out, [task])
    claim_dir(out, VERB)
    run_dir = out / "search"
    result = run_search(
        task,
        run_dir,
        config,
        resume=(run_dir / RUN_FILE).is_file(),
        device=device,
        progress=progress,
    )
    if not train:
        return DemoResult(out, task, result)
    return _train_predict_evaluate(out, task, result, config, seed, device, progress)


def _train_predict_evaluate(
    out: Path,
    task_dir: Path,
    search: SearchResult,
    config: SearchConfig,
    seed: int,
    device: str,
    progress: bool,
) -> DemoResult:
    from decathlon.datalist import load_task
    from nasmed.evaluate import evaluate
    from nasmed.infer import predict
    from nasmed.train.api import train

    train_dir = out / "train"
    run = train(
        task_dir,
        search.genotype_path,
        train_dir,
        patch=config.patch,
        work_dir=search.run_dir / "work",  # the search's preprocessing and folds
        resume=(train_dir / RUN_FILE).is_file(),
        seed=seed,
        device=device,
        progress=progress,
        **DEMO_TRAIN,
    )
    info = json.loads((run / "model.json").read_text(encoding="utf-8"))["info"]
    task = load_task(task_dir)
    preds = out / "predictions"
    test: tuple[Path, ...] = ()
    if task.test:
        images = [f for c in task.test for f in c.images]
        test = tuple(predict(run, images, preds / "test", device=device, progress=progress))
    held_out = [task.case(name) for name in info["val_cases"]]
    images = [f for c in held_out for f in c.images]
    val = tuple(predict(run, images, preds / "validation", device=device, progress=progress))
    ref = claim_dir(out / "reference", VERB)
    for case in held_out:
        assert case.label is not None
        with case.label.open("rb") as src, atomic_open(ref / f"{case.name}.nii.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    metrics = evaluate(preds / "validation", ref, labels=task.labels, out=out / "metrics.json")
    return DemoResult(out, task_dir, search, run, test, val, metrics)
