"""The demo behind ``make demo`` / ``nasmed demo``: the whole path on the embedded synthetic task.

:func:`run_demo` writes (or reuses) the embedded task, runs a small architecture search on it
(space ``scnas-small``, 32^3 patches, a few epochs: a few minutes on 2 CPU cores) into
``OUT/search`` and returns what it made. Running it again on the same folder reuses the finished
search (or continues an interrupted one). Later steps (train, predict, evaluate) append to
:class:`DemoResult` and :func:`run_demo`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from decathlon.synthetic import embedded_task
from nasmed.errors import ConfigError
from nasmed.rundir import RUN_FILE
from nasmed.search.loop import SearchConfig, SearchResult, run_search

__all__ = ["DEMO_SEARCH", "DemoResult", "run_demo"]

log = logging.getLogger(__name__)

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
        return "\n".join(lines)


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    device: str = "auto",
    search: SearchConfig | None = None,
    progress: bool = True,
) -> DemoResult:
    """Search an architecture for the embedded synthetic task into ``OUT/search``.

    Args:
        out_dir: the demo folder (created; a finished demo there is reused).
        seed: seed of the search.
        device: torch device.
        search: search settings (default :data:`DEMO_SEARCH`, with ``seed``).
        progress: progress bars.

    Raises:
        ConfigError: ``out_dir`` is a file. RunDirError: ``OUT/search`` holds another run.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: demo output exists and is a file; use a folder")
    config = replace(search or DEMO_SEARCH, seed=seed)
    task = embedded_task()
    run_dir = out / "search"
    result = run_search(
        task,
        run_dir,
        config,
        resume=(run_dir / RUN_FILE).is_file(),
        device=device,
        progress=progress,
    )
    return DemoResult(out, task, result)
