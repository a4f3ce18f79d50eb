"""decathlon.slices: targets from labels, axes, masks, normalisation, cache, splits by case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import decathlon.slices as slices_mod
from decathlon.datalist import Task, load_task, read_case
from decathlon.errors import DatasetError
from decathlon.io import Geometry
from decathlon.slices import SliceSet, build_slices, choose_axis, slice_shape, split_by_case
from decathlon.synthetic import write_synthetic_task


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Task:
    root = tmp_path_factory.mktemp("slices") / "Task90_Slices"
    write_synthetic_task(root, cases=5, shape=(24, 20, 10), classes=2, test_cases=0)
    return load_task(root)


def test_shapes_and_targets_match_the_labels(task: Task) -> None:
    s = build_slices(task, size=16, min_area=3, reorient=False)
    assert s.images.shape == (5 * 10, 1, 16, 16) and s.images.dtype == np.float32
    assert s.targets.shape == (50, 2) and s.axis == 2
    assert s.class_names == tuple(task.labels[v] for v in task.foreground_labels)
    _, label = read_case(task.training[1])
    assert label is not None
    lab = label.array[0]
    for k in range(10):
        expect = [int((lab[:, :, k] == v).sum() >= 3) for v in task.foreground_labels]
        row = np.flatnonzero((s.case_index == 1) & (s.slice_index == k))[0]
        assert s.targets[row].tolist() == expect
    assert s.targets.any() and not s.targets.all()


def test_reorientation_only_reorders_slices(task: Task) -> None:
    raw = build_slices(task, size=16, reorient=False)
    canon = build_slices(task, size=16)
    assert canon.axis == raw.axis == 2
    for c in range(len(task.training)):
        a = raw.targets[raw.case_index == c].tolist()
        b = canon.targets[canon.case_index == c].tolist()
        assert sorted(a) == sorted(b)
    # synthetic cases cycle through RAS, LPS, LAS, LPI: LPS slices come back flipped in-plane,
    # LPI ones also in reverse order
    image, _ = read_case(task.training[1])
    assert image.geometry.orientation == "LPS"
    r, k = raw.images[raw.case_index == 1], canon.images[canon.case_index == 1]
    assert np.allclose(k, r[:, :, ::-1, ::-1], atol=1e-4) and not np.allclose(k, r, atol=1e-4)
    image, _ = read_case(task.training[3])
    assert image.geometry.orientation == "LPI"
    r, k = raw.images[raw.case_index == 3], canon.images[canon.case_index == 3]
    assert np.allclose(k, r[::-1, :, ::-1, ::-1], atol=1e-4)


def test_slice_shape_follows_the_orientation() -> None:
    perm = np.zeros((4, 4))
    perm[2, 0] = perm[0, 1] = perm[1, 2] = perm[3, 3] = 1.0  # array axis 0 runs along world z
    geom = Geometry(perm, (5, 6, 7))
    assert slice_shape(geom, "auto", reorient=False) == (6, 7)
    assert slice_shape(geom, "auto", reorient=True) == (6, 7)  # canonical (6, 7, 5), cut along z
    assert slice_shape(geom, 0, reorient=True) == (7, 5)


def test_per_image_normalisation(task: Task) -> None:
    s = build_slices(task, size=16)
    for c in range(len(task.training)):
        vol = s.images[s.case_index == c]
        assert abs(float(vol.mean())) < 1e-4 and abs(float(vol.std()) - 1) < 1e-3
    assert s.images.mean(axis=(1, 2, 3)).std() > 0.05  # slices keep their relative intensity


def test_other_axis_and_masks(task: Task) -> None:
    s = build_slices(task, axis=0, size=12, masks=True)
    assert s.axis == 0 and len(s) == 5 * 24
    assert s.masks is not None and s.masks.shape == (120, 12, 12)
    assert set(np.unique(s.masks)) <= {0, 1, 2}
    # a slice whose mask shows a label is a slice whose target says so (mask is downsampled)
    shown = np.stack([(s.masks == v).any(axis=(1, 2)) for v in (1, 2)], axis=1)
    assert np.all(s.targets[shown] == 1)


def test_choose_axis_follows_superior_inferior() -> None:
    assert choose_axis(Geometry(np.diag([1.0, 1.0, 3.0, 1.0]), (4, 4, 4))) == 2
    perm = np.zeros((4, 4))
    perm[2, 0] = perm[0, 1] = perm[1, 2] = 1.0  # array axis 0 runs along world z
    perm[3, 3] = 1.0
    assert choose_axis(Geometry(perm, (4, 4, 4))) == 0


def test_cache_is_written_and_reused(
    task: Task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_slices(task, size=16, cache_dir=tmp_path, masks=True)
    folders = list(tmp_path.glob("slices-*"))
    assert len(folders) == 1 and (folders[0] / "meta.json").is_file()
    assert (folders[0] / "images.npy").is_file() and (folders[0] / "masks.npy").is_file()

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("read_case called although the cache holds the slices")

    monkeypatch.setattr(slices_mod, "read_case", boom)
    again = build_slices(task, size=16, cache_dir=tmp_path, masks=True)
    assert np.array_equal(first.images, again.images) and again.masks is not None
    assert again.case_names == first.case_names
    with pytest.raises(AssertionError):  # other settings -> another key -> rebuilt
        build_slices(task, size=8, cache_dir=tmp_path)


def test_splits_are_by_case(task: Task) -> None:
    s = build_slices(task, size=8)
    groups = split_by_case(s.case_names, (0.6, 0.2, 0.2), seed=3)
    assert sorted(n for g in groups for n in g) == sorted(s.case_names)
    assert all(groups) and len({n for g in groups for n in g}) == len(s.case_names)
    parts: list[SliceSet] = [s.select_cases(g) for g in groups]
    seen: dict[str, int] = {}
    for i, part in enumerate(parts):
        for name in set(part.slice_cases):
            assert name not in seen, f"case {name} in splits {seen.get(name)} and {i}"
            seen[name] = i
        assert len(part) == 10 * len(groups[i])  # every slice of a case goes with it
    assert sum(len(p) for p in parts) == len(s)
    assert split_by_case(s.case_names, (0.6, 0.2, 0.2), seed=3) == groups


def test_bad_settings(task: Task) -> None:
    with pytest.raises(DatasetError):
        build_slices(task, axis=3)
    with pytest.raises(DatasetError):
        build_slices(task, size=2)
    with pytest.raises(DatasetError):
        split_by_case(["a", "b"], (0.6, 0.2, 0.2))
