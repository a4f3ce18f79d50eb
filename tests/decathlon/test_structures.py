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
