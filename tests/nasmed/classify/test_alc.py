"""ALC and AUC against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nasmed.classify.alc import alc, autodl_score, roc_auc, transform_time


def test_alc_on_a_hand_written_curve() -> None:
    # T = 600 s, predictions at 60 s (score 0.5) and 300 s (score 0.8)
    t1 = math.log(2) / math.log(11)
    t2 = math.log(6) / math.log(11)
    expected = 0.5 * (t2 - t1) + 0.8 * (1 - t2)
    assert expected == pytest.approx(0.43130, abs=1e-4)
    assert alc([300.0, 60.0], [0.8, 0.5], 600.0) == pytest.approx(expected)


def test_alc_edges() -> None:
    assert alc([], [], 100.0) == 0.0
    assert alc([0.0], [1.0], 100.0) == pytest.approx(1.0)
    assert alc([10.0, 200.0], [0.5, 1.0], 100.0) == pytest.approx(
        0.5 * (1 - transform_time(10, 100))
    )
    assert transform_time(100.0, 100.0) == 1.0 and transform_time(0.0, 100.0) == 0.0
    with pytest.raises(ValueError):
        alc([1.0], [], 10.0)


def test_roc_auc_by_hand() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.ones(3), np.arange(3.0)))
    lab = np.array([[0, 1], [1, 1], [0, 1]])
    score = np.array([[0.1, 0.3], [0.9, 0.2], [0.2, 0.1]])
    assert autodl_score(lab, score) == pytest.approx(1.0)  # class 2 (all positive) skipped
