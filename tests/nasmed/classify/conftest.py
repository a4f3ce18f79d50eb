"""Fixtures of the classify tests: a tiny synthetic task on disk and in-memory slice sets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from decathlon.slices import SliceSet
from decathlon.synthetic import write_synthetic_task


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six cases of 32 x 32 x 12 voxels, two foreground classes."""
    root = tmp_path_factory.mktemp("classify") / "Task91_Tiny"
    return write_synthetic_task(root, cases=6, shape=(32, 32, 12), classes=2, test_cases=0)


def toy_slices(n_cases: int = 4, per_case: int = 12, size: int = 32, seed: int = 0) -> SliceSet:
    """Slices whose class k shows as a bright square in quadrant k (learnable in seconds)."""
    rng = np.random.default_rng(seed)
    n = n_cases * per_case
    targets = (rng.random((n, 2)) < 0.5).astype(np.uint8)
    images = rng.normal(0, 1, (n, 1, size, size)).astype(np.float32)
    h = size // 2
    for i in range(n):
        if targets[i, 0]:
            images[i, 0, 2 : h - 2, 2 : h - 2] += 3
        if targets[i, 1]:
            images[i, 0, h + 2 : -2, h + 2 : -2] += 3
    return SliceSet(
        images=images,
        targets=targets,
        case_index=np.repeat(np.arange(n_cases), per_case),
        slice_index=np.tile(np.arange(per_case), n_cases),
        case_names=tuple(f"c{i}" for i in range(n_cases)),
        class_names=("a", "b"),
        axis=2,
    )


@pytest.fixture
def toy() -> Callable[..., SliceSet]:
    """:func:`toy_slices` as a fixture (test modules cannot import conftest by name)."""
    return toy_slices
