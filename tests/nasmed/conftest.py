"""Fixtures of the training tests: tiny synthetic tasks and one briefly trained model.

The easy task has one large foreground class, so a few seconds of training on CPU reach a Dice
far above chance. Session-scoped: each pytest-xdist worker makes them once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from decathlon.synthetic import write_synthetic_task

EASY_PATCH = (32, 32, 16)


@pytest.fixture(scope="session")
def easy_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CT-like, 1 foreground class, 4 training cases of 32x32x24, 1 test case."""
    root = tmp_path_factory.mktemp("easy")
    return write_synthetic_task(root / "easy", cases=4, shape=(32, 32, 24), classes=1, test_cases=1)


@pytest.fixture(scope="session")
def easy_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A preprocessing folder shared by the runs on the easy task."""
    return tmp_path_factory.mktemp("easy_work") / "work"


@pytest.fixture(scope="session")
def trained_unet(
    easy_task: Path, easy_work: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A MONAI UNet trained briefly on the easy task (a finished run folder)."""
    from nasmed.train.config import TrainConfig
    from nasmed.training import train

    config = TrainConfig(
        epochs=8,
        patch=EASY_PATCH,
        steps_per_epoch=6,
        width=0.5,
        optimizer="adamw",
        lr=3e-3,
        val_every=4,
        folds=4,
        workers=0,
    )
    return train(
        easy_task,
        "unet",
        tmp_path_factory.mktemp("trained") / "run",
        config,
        device="cpu",
        work_dir=easy_work,
        progress=False,
    )
