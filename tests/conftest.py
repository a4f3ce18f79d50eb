"""Shared fixtures: a fixed seed, few torch threads, and a small synthetic task on disk; tests
marked ``cuda`` are skipped where CUDA is not available."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch

# One thread for everything, fixtures of module and session scope included (they run before the
# function-scoped fixture below): a result computed in a fixture and recomputed in a test must use
# the same thread count, or float reductions differ (compare's resume test retrains to the digit).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_threads() -> Iterator[None]:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``cuda``-marked tests on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run benchmarks/gpu_check.sh on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
