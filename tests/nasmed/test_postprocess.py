"""Largest-component postprocessing: chosen exactly where it raises validation Dice (planted
spurious blobs), never where the truth has several components; saved, loaded and applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nasmed.errors import RunDirError
from nasmed.postprocess import (
    POSTPROCESSING_FILE,
    Postprocessing,
    apply_saved,
    determine_postprocessing,
    keep_largest,
)


def _reference() -> np.ndarray:
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[2:8, 2:8, 2:8] = 1
    ref[12:18, 12:18, 12:18] = 2
    return ref


def test_spurious_blobs_of_one_class_choose_that_class() -> None:
    ref = _reference()
    pred = ref.copy()
    pred[15:17, 1:3, 1:3] = 1  # a false-positive island of class 1
    post = determine_postprocessing([pred, ref.copy()], [ref, ref], 3)
    # the whole foreground's largest component would delete a class: not chosen
    assert post == Postprocessing(False, (1,))
    assert post.dice_after == pytest.approx(1.0) and post.dice_before < 1.0
    assert np.array_equal(post.apply(pred), ref)


def test_foreground_component_when_one_class_only() -> None:
    ref = np.zeros((16, 16, 16), np.uint8)
    ref[2:10, 2:10, 2:10] = 1
    pred = ref.copy()
    pred[13:15, 13:15, 13:15] = 1
    post = determine_postprocessing([pred], [ref], 2)
    assert post.foreground and post.classes == ()  # class LCC adds nothing after it


def test_true_multi_component_classes_are_left_alone() -> None:
    ref = _reference()
    ref[12:14, 1:3, 1:3] = 2  # class 2 truly has two components
    assert determine_postprocessing([ref], [ref], 3).identity


def test_keep_largest_does_not_touch_its_input() -> None:
    seg = _reference()
    seg[0, 0, 0] = 1
    before = seg.copy()
    out = keep_largest(seg, [1], independent=True)
    assert np.array_equal(seg, before) and out[0, 0, 0] == 0 and out.dtype == seg.dtype


def test_saved_decision_is_applied_and_bad_files_are_user_errors(tmp_path: Path) -> None:
    ref = _reference()
    pred = ref.copy()
    pred[15:17, 1:3, 1:3] = 1
    assert np.array_equal(apply_saved(tmp_path, pred), pred)  # no file: unchanged
    Postprocessing(False, (1,)).save(tmp_path)
    assert np.array_equal(apply_saved(tmp_path, pred), ref)
    (tmp_path / POSTPROCESSING_FILE).write_text('{"classes": 3}')
    with pytest.raises(RunDirError, match=POSTPROCESSING_FILE):
        apply_saved(tmp_path, pred)
