"""decathlon.validate: every problem found and reported one line each; the summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decathlon.errors import ValidationError
from decathlon.io import Geometry, write_image
from decathlon.testing import BAD_INPUTS, bad_task, case_arrays, lps_geometry, write_task
from decathlon.validate import validate_task


def test_valid_task_summary(tmp_path: Path) -> None:
    report = validate_task(write_task(tmp_path / "Tiny", cases=3))
    assert report.ok and report.problems == [] and report.warnings == []
    report.raise_if_problems()
    summary = report.summary
    assert summary is not None
    assert (summary.num_training, summary.num_test) == (3, 1)
    assert summary.modalities == ("CT",)
    np.testing.assert_allclose(summary.spacing_median, (0.8, 0.8, 2.5))
    assert summary.size_min == summary.size_max == (10, 9, 8)
    assert summary.orientations == {"LPS": 4}
    # label 1 is a 4x4x3 box minus the 1-voxel label 2, in 10x9x8 = 720 voxels
    assert summary.foreground_share[1] == pytest.approx(47 / 720)
    assert summary.foreground_share[2] == pytest.approx(1 / 720)
    assert summary.cases_with_label == {1: 3, 2: 3}
    table = summary.table()
    assert "spacing median (mm)" in table and "label 2 (lesion)" in table


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_each_bad_input_is_reported_naming_the_file(tmp_path: Path, kind: str) -> None:
    root, where, words = bad_task(tmp_path / "t", kind)
    report = validate_task(root)
    assert not report.ok
    assert any(where in p and words in p for p in report.problems), report.problems
    assert all("\n" not in p for p in report.problems)
    with pytest.raises(ValidationError) as exc:
        report.raise_if_problems()
    assert exc.value.problems == report.problems


def test_all_problems_are_collected(tmp_path: Path) -> None:
    root, _, _ = bad_task(tmp_path / "t", "nan_intensity")  # case_1 image
    (root / "labelsTr" / "case_0.nii.gz").unlink()
    write_image(root / "imagesTs" / "case_99.nii.gz", np.zeros((2, 10, 9, 8)), lps_geometry())
    report = validate_task(root, workers=2)
    assert len(report.problems) == 3, report.problems
    joined = "\n".join(report.problems)
    assert "labelsTr/case_0.nii.gz: file not found" in joined
    assert "imagesTr/case_1.nii.gz: 1 voxels are NaN" in joined
    assert "imagesTs/case_99.nii.gz: image has 2 channels" in joined


def test_empty_label_is_a_warning(tmp_path: Path) -> None:
    root = write_task(tmp_path / "t")
    empty = root / "labelsTr" / "case_1.nii.gz"
    write_image(empty, np.zeros((10, 9, 8), np.uint8), lps_geometry())
    report = validate_task(root)
    assert report.ok
    assert any(str(empty) in w and "empty" in w for w in report.warnings)
    summary = report.summary
    assert summary is not None and summary.cases_with_label == {1: 1, 2: 1}


def test_num_training_mismatch_is_a_warning(tmp_path: Path) -> None:
    report = validate_task(write_task(tmp_path / "t", dataset={"numTraining": 7}))
    assert report.ok
    assert any("numTraining" in w for w in report.warnings)


def test_small_affine_difference_is_tolerated(tmp_path: Path) -> None:
    root = write_task(tmp_path / "t")
    affine = lps_geometry().affine.copy()
    affine[0, 3] += 1e-5
    label = root / "labelsTr" / "case_1.nii.gz"
    write_image(label, case_arrays(1)[1], Geometry(affine, (10, 9, 8)))
    assert validate_task(root).ok


def test_unparsable_task_has_no_summary(tmp_path: Path) -> None:
    report = validate_task(tmp_path / "nope")
    assert not report.ok and report.summary is None and report.task is None
    assert "does not exist" in report.problems[0]
