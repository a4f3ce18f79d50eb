"""Atomic writes honour the umask as open() and mkdir() would."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from decathlon.fsutil import atomic_save_npy, atomic_write_json, make_temp_dir
from decathlon.io import Geometry, write_image
from decathlon.synthetic import write_synthetic_task


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_get_the_modes_open_and_mkdir_would(tmp_path: Path, umask: int) -> None:
    with open(tmp_path / "plain.txt", "w") as f:  # what the user's umask gives
        f.write("x")
    atomic_write_json(tmp_path / "a.json", {"a": 1})
    atomic_save_npy(tmp_path / "a.npy", np.zeros(3))
    assert _mode(tmp_path / "a.json") == _mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert _mode(tmp_path / "a.npy") == 0o666 & ~umask
    folder = make_temp_dir(tmp_path, prefix=".x.")
    assert _mode(folder) == 0o777 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # still atomic


def test_written_images_and_synthetic_tasks_follow_the_umask(tmp_path: Path, umask: int) -> None:
    geometry = Geometry(np.eye(4), (8, 8, 8))
    for suffix in (".nii.gz", ".mha"):
        p = write_image(tmp_path / f"img{suffix}", np.zeros((1, 8, 8, 8)), geometry)
        assert _mode(p) == 0o666 & ~umask
    task = write_synthetic_task(tmp_path / "task", cases=2, shape=(8, 8, 8), test_cases=0)
    assert _mode(task) == 0o777 & ~umask
    assert _mode(task / "imagesTr") == 0o777 & ~umask
    assert _mode(task / "dataset.json") == 0o666 & ~umask
    assert _mode(next((task / "labelsTr").iterdir())) == 0o666 & ~umask
