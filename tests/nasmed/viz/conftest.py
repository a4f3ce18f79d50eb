"""Fixtures of the plotting tests: a tiny synthetic CT task on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from decathlon.synthetic import write_synthetic_task


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CT-like, 2 foreground classes, 2 training cases of 24x20x12."""
    root = tmp_path_factory.mktemp("viz_task")
    return write_synthetic_task(root / "tiny", cases=2, shape=(24, 20, 12), classes=2, test_cases=0)


def assert_png(path: Path) -> None:
    """``path`` is a non-empty PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
