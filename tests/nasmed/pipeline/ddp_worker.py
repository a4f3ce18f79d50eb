"""A training run of the DDP tests, started by ``torchrun`` (or alone) as a script.

Usage: ``ddp_worker.py CACHE_DIR TRAIN,CASES VAL,CASES RUN_DIR BATCH EPOCHS [resume]``. Trains
the tiny UNet of :func:`build` with :func:`nasmed.pipeline.trainers.make_trainer`, validating
after every epoch (MONAI's Dice metric gathers over ranks); rank 0 saves ``final.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from nasmed.distributed import cleanup_distributed, init_distributed, is_main
from nasmed.models.baselines import make_unet
from nasmed.pipeline.trainers import make_trainer
from nasmed.train.trainer import TrainConfig, Trainer
from nasmed.train.validation import validate_dice
from nasmed.training import dice_score

PATCH = (16, 16, 16)


def build(
    cache: Path, cases: list[str], val: list[str], run: Path, batch: int, epochs: int
) -> Trainer:
    torch.manual_seed(0)

    def validate(net: torch.nn.Module) -> dict[str, float]:
        scores = validate_dice(net, cache, val, PATCH, device=torch.device("cpu"), num_classes=3)
        return dice_score(scores)

    model = make_unet(1, 3, width=0.25, patch=PATCH)
    config = TrainConfig(
        epochs=epochs, patch=PATCH, steps_per_epoch=2, batch_size=batch, seed=3, workers=0
    )
    return make_trainer(
        model,
        config,
        cache_dir=cache,
        train_cases=cases,
        run_dir=run,
        device=torch.device("cpu"),
        validate=validate,
        progress=False,
    )


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    cache, cases, val, run = Path(argv[0]), argv[1].split(","), argv[2].split(","), Path(argv[3])
    batch, epochs, resume = int(argv[4]), int(argv[5]), argv[6:] == ["resume"]
    init_distributed(torch.device("cpu"))
    try:
        trainer = build(cache, cases, val, run, batch, epochs)
        trainer.fit(resume=resume)
        if is_main():
            torch.save(trainer.model.state_dict(), run / "final.pt")
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    main(sys.argv[1:])
