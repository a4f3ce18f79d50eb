"""The 'structures' scene: thin tubes and hollow spheres whose label needs context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from decathlon.datalist import load_task
from decathlon.errors import DecathlonError
from decathlon.io import read_image
from decathlon.structures import synthesize_structures_case
from decathlon.synthetic import write_synthetic_task


def test_case_needs_context_and_fine_resolution() -> None:
    image, label, geometry = synthesize_structures_case(0, 1, shape=(40, 40, 40))
    assert image.shape == (1, 40, 40, 40) and image.dtype == np.float32
    assert set(np.unique(label)) == {0, 1, 2}
    img = image[0]
    inner = ndimage.binary_erosion(label == 2, iterations=2)
    shell = (label == 2) & ~ndimage.binary_erosion(label == 2, iterations=1)
    # a cyst's interior is as dark as the background: only its shell is bright
    assert abs(img[inner].mean() - img[label == 0].mean()) < 0.2
    assert img[shell].mean() > img[inner].mean() + 0.3
    assert img[label == 1].mean() > 0.5
    # vessels are thin: no voxel deeper than 2.5 voxels inside one (radius at most 2)
    assert ndimage.distance_transform_edt(label == 1).max() <= 2.5
    assert np.allclose(geometry.affine, np.eye(4))
    again = synthesize_structures_case(0, 1, shape=(40, 40, 40))
    assert np.array_equal(again[0], image) and np.array_equal(again[1], label)


def test_task_writes_and_refuses_other_classes(tmp_path: Path) -> None:
    task = write_synthetic_task(
        tmp_path / "t", cases=2, shape=(24, 24, 24), scene="structures", test_cases=0
    )
    parsed = load_task(task)
    assert parsed.labels == {0: "background", 1: "vessel", 2: "cyst"}
    assert parsed.modalities == ("T1w",)
    image = read_image(task / "imagesTr" / "synth_000.nii.gz")
    assert image.array.shape == (1, 24, 24, 24)
    with pytest.raises(DecathlonError, match="2 classes"):
        write_synthetic_task(tmp_path / "u", cases=2, classes=3, scene="structures")
    with pytest.raises(DecathlonError, match="scene"):
        write_synthetic_task(tmp_path / "v", cases=2, scene="other")


def test_context_scene_labels_only_shells_with_a_nucleus(monkeypatch: pytest.MonkeyPatch) -> None:
    from decathlon import structures

    image, label, _ = structures.synthesize_context_case(3, 2)
    assert image.shape == (1, 32, 32, 32) and set(np.unique(label)) == {0, 1}
    again = structures.synthesize_context_case(3, 2)
    assert np.array_equal(again[0], image) and np.array_equal(again[1], label)
    # the noise-free picture: what is bright, before blur and noise
    monkeypatch.setattr(structures, "_finish", lambda rng, bright, shape: bright[None])
    for index in range(4):
        bright, label, _ = structures.synthesize_context_case(3, index)
        bright = bright[0] > 0.5
        cells, n_cells = ndimage.label(label == 1)
        assert n_cells >= 1
        depth = ndimage.distance_transform_edt(label == 1)
        for k in range(1, n_cells + 1):
            cell = cells == k
            assert depth[cell].max() >= 4.5  # radius 5 or more, on the grid
            # a bright shell around it, and a nucleus inside: bright voxels deeper than the shell
            rim = ndimage.binary_dilation(cell) & ~ndimage.binary_erosion(cell, iterations=2)
            assert bright[rim].mean() > 0.5
            assert bright[cell & (depth >= 3)].any()
        assert (~bright[depth >= 3]).mean() > 0.5  # mostly dark inside (tubes may cross)
        # unlabelled hollow shells: bright, 10+ voxels wide, dark inside, away from every cell
        free, _ = ndimage.label(bright & ~ndimage.binary_dilation(label == 1, iterations=2))
        boxes = [b for b in ndimage.find_objects(free) if b]
        hollow = [b for b in boxes if min(s.stop - s.start for s in b) >= 10]
        assert hollow


def test_context_task_has_one_class(tmp_path: Path) -> None:
    task = write_synthetic_task(
        tmp_path / "c", cases=2, shape=(24, 24, 24), scene="context", test_cases=0
    )
    assert load_task(task).labels == {0: "background", 1: "cell"}
    with pytest.raises(DecathlonError, match="'context' scene has exactly 1 classes"):
        write_synthetic_task(tmp_path / "d", cases=2, classes=3, scene="context")
