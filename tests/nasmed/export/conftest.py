"""Fixtures of the export tests: finished run folders of a genotype, MONAI's UNet and DynUNet.

Trained for a few steps on a tiny synthetic task (the exports are checked against PyTorch, so
the weights need not be good), plus one UNet trained long enough to segment (the bundle test
compares labels).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import searchspaces
from decathlon.synthetic import write_synthetic_task
from nasmed.supernet import sample_genotype

PATCH = (32, 32, 16)


@pytest.fixture(scope="session")
def export_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CT-like, 1 foreground class, 3 training cases of 32x32x24, 1 test case."""
    root = tmp_path_factory.mktemp("export_task")
    return write_synthetic_task(root / "task", cases=3, shape=(32, 32, 24), classes=1, test_cases=1)


@pytest.fixture(scope="session")
def genotype_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random genotype of the small space."""
    path = tmp_path_factory.mktemp("geno") / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 0).save(path)
    return path


def _train(task: Path, arch: str, out: Path, work: Path, **kw: object) -> Path:
    from nasmed.train.config import TrainConfig
    from nasmed.training import train

    settings: dict[str, object] = {
        "epochs": 1,
        "patch": PATCH,
        "steps_per_epoch": 2,
        "width": 0.5,
        "folds": 3,
        "workers": 0,
        **kw,
    }
    config = TrainConfig(**settings)  # type: ignore[arg-type]
    return train(task, arch, out, config, device="cpu", work_dir=work, progress=False)


@pytest.fixture(scope="session")
def export_runs(
    export_task: Path, genotype_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Finished run folders: ``genotype``, ``unet``, ``dynunet``."""
    root = tmp_path_factory.mktemp("export_runs")
    work = root / "work"
    archs = {"genotype": str(genotype_file), "unet": "unet", "dynunet": "dynunet"}
    return {name: _train(export_task, arch, root / name, work) for name, arch in archs.items()}


@pytest.fixture(scope="session")
def segmenting_unet(export_task: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UNet trained until it segments the synthetic organ."""
    root = tmp_path_factory.mktemp("segmenting")
    return _train(
        export_task,
        "unet",
        root / "run",
        root / "work",
        epochs=12,
        steps_per_epoch=6,
        optimizer="adamw",
        lr=3e-3,
        val_every=12,
    )
