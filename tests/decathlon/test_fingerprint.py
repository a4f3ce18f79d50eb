"""Dataset fingerprint: crop shapes, class counts, foreground intensities, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decathlon.datalist import load_task
from decathlon.errors import DatasetError
from decathlon.fingerprint import Fingerprint, IntensityStats, fingerprint_arrays, fingerprint_task
from decathlon.io import Geometry, Image
from decathlon.synthetic import write_synthetic_task


def _case() -> tuple[Image, Image]:
    array = np.zeros((2, 20, 18, 10), dtype=np.float32)
    array[0, 2:17, 3:15, 1:9] = 5.0  # body, cropped to this box
    array[1, 2:17, 3:15, 1:9] = -3.0
    seg = np.zeros((1, 20, 18, 10), dtype=np.uint8)
    seg[0, 5:9, 5:9, 3:6] = 1
    seg[0, 10:12, 10:12, 4:6] = 2
    array[0][seg[0] > 0] = 100.0
    array[1][seg[0] > 0] = 7.0
    geom = Geometry(np.diag([0.8, 0.8, 3.0, 1.0]), (20, 18, 10))
    return Image(array, geom), Image(seg, geom)


def test_fingerprint_arrays() -> None:
    image, label = _case()
    fp, sampled = fingerprint_arrays(image, label, name="c", rng=np.random.default_rng(0))
    assert fp.shape == (20, 18, 10)
    assert fp.shape_after_crop == (15, 12, 8)
    assert fp.spacing == pytest.approx((0.8, 0.8, 3.0))
    assert fp.class_voxels == {1: 4 * 4 * 3, 2: 2 * 2 * 2}
    assert len(sampled) == 2
    assert np.all(sampled[0] == 100.0) and np.all(sampled[1] == 7.0)  # foreground only
    assert fp.crop_fraction == pytest.approx(15 * 12 * 8 / (20 * 18 * 10))


def test_intensity_stats() -> None:
    values = np.arange(1001, dtype=np.float32)
    s = IntensityStats.of(values)
    assert s.mean == pytest.approx(500.0)
    assert s.median == pytest.approx(500.0)
    assert s.percentile_00_5 == pytest.approx(5.0)
    assert s.percentile_99_5 == pytest.approx(995.0)
    assert (s.min, s.max) == (0.0, 1000.0)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_task(tmp_path_factory.mktemp("fp") / "task", cases=4, test_cases=0)


def test_fingerprint_task_deterministic_and_round_trips(task_dir: Path, tmp_path: Path) -> None:
    task = load_task(task_dir)
    fp = fingerprint_task(task, workers=2)
    assert fp == fingerprint_task(task, workers=1)
    assert [c.name for c in fp.cases] == [c.name for c in task.training]
    assert fp.modalities == task.modalities
    assert len(fp.intensity) == task.num_channels
    assert all(c.sources and c.class_voxels for c in fp.cases)
    assert Fingerprint.load(fp.save(tmp_path / "fingerprint.json")) == fp


def test_load_rejects_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "fingerprint.json"
    bad.write_text('{"version": 1}')
    with pytest.raises(DatasetError, match="not a valid fingerprint"):
        Fingerprint.load(bad)
    with pytest.raises(DatasetError, match="not found"):
        Fingerprint.load(tmp_path / "missing.json")
