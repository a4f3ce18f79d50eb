"""A training run of the DDP tests, started by ``torchrun`` (or alone) as a script.

Usage: ``ddp_worker.py CACHE_DIR CASE,CASE RUN_DIR BATCH EPOCHS [resume]``. Trains the tiny UNet
of :func:`build` with :func:`nasmed.pipeline.trainers.make_trainer`; rank 0 saves ``final.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from nasmed.distributed import cleanup_distributed, init_distributed, is_main
from nasmed.models.baselines import make_unet
from nasmed.pipeline.trainers import make_trainer
from nasmed.train.trainer import TrainConfig, Trainer

PATCH = (16, 16, 16)


def build(cache: Path, cases: list[str], run: Path, batch: int, epochs: int) -> Trainer:
    torch.manual_seed(0)
    model = make_unet(1, 3, width=0.25, patch=PATCH)
    config = TrainConfig(epochs=epochs, patch=PATCH, steps_per_epoch=2, batch_size=batch, seed=3)
    return make_trainer(
        model,
        config,
        cache_dir=cache,
        train_cases=cases,
        run_dir=run,
        device=torch.device("cpu"),
        progress=False,
    )


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    cache, cases, run = Path(argv[0]), argv[1].split(","), Path(argv[2])
    batch, epochs, resume = int(argv[3]), int(argv[4]), argv[5:] == ["resume"]
    init_distributed(torch.device("cpu"))
    try:
        trainer = build(cache, cases, run, batch, epochs)
        trainer.fit(resume=resume)
        if is_main():
            torch.save(trainer.model.state_dict(), run / "final.pt")
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    main(sys.argv[1:])
