"""Fixtures of the search tests: a tiny task and its shared preprocessing folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from decathlon.synthetic import write_synthetic_task


@pytest.fixture(scope="session")
def search_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CT-like, 1 foreground class, 4 training cases of 24x24x16."""
    root = tmp_path_factory.mktemp("search_task")
    return write_synthetic_task(root / "task", cases=4, shape=(24, 24, 16), classes=1, test_cases=0)


@pytest.fixture(scope="session")
def search_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Preprocessing folder shared by the searches on ``search_task``."""
    return tmp_path_factory.mktemp("search_work") / "work"
