"""SAOL attention, the ALC curve, an augmentation-policy gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nasmed.classify.alc import alc
from nasmed.classify.autoaugment.policy import Policy, Step, SubPolicy
from nasmed.errors import ConfigError
from nasmed.viz.classify import plot_alc, plot_attention, plot_policy_gallery, upsample_attention
from nasmed.viz.figure import save_png

from .conftest import assert_png


def test_alc_curve(tmp_path: Path) -> None:
    times, scores = [5.0, 30.0, 200.0], [0.2, 0.5, 0.7]
    fig = plot_alc(times, scores, budget=120.0)
    (ax,) = fig.get_axes()
    assert ax.get_title() == f"ALC = {alc(times, scores, 120.0):.4f}"
    step = ax.lines[0]
    # the prediction after the budget does not count; the curve holds the last score to t'=1
    assert list(step.get_ydata()) == [0.0, 0.2, 0.5, 0.5]
    assert step.get_xdata()[-1] == 1.0
    assert_png(save_png(fig, tmp_path / "alc.png"))
    with pytest.raises(ConfigError, match="2 prediction times but 1 scores"):
        plot_alc([1.0, 2.0], [0.1], budget=10)


def test_attention_maps(tmp_path: Path) -> None:
    images = np.random.default_rng(0).normal(size=(5, 1, 32, 32))
    attention = np.full((5, 8, 8), 1 / 64)
    attention[:, 2, 3] = 0.5
    masks = np.zeros((5, 32, 32))
    masks[:, 8:12, 12:16] = 1
    fig = plot_attention(
        images, attention, titles=[f"s{i}" for i in range(5)], masks=masks, ncols=3
    )
    visible = [ax for ax in fig.get_axes() if ax.get_visible()]
    assert len(visible) == 5 and len(fig.get_axes()) == 6
    assert [len(ax.get_images()) for ax in visible] == [2] * 5
    overlay = np.asarray(visible[0].get_images()[1].get_array())
    assert overlay.min() == 0.0 and overlay.max() == pytest.approx(1.0)  # lowest .. highest
    flat = plot_attention(images[:1], np.full((1, 8, 8), 1 / 64))
    assert not np.asarray(flat.get_axes()[0].get_images()[1].get_array()).any()  # uniform: none
    assert_png(save_png(fig, tmp_path / "att.png"))
    up = upsample_attention(attention[0], (32, 32))
    assert up.shape == (32, 32) and up.max() == pytest.approx(1.0)
    peak = np.unravel_index(np.argmax(up), up.shape)
    assert 8 <= peak[0] < 12 and 12 <= peak[1] < 16  # the hot cell (2, 3) of 8x8 -> 4x4 block
    with pytest.raises(ConfigError, match="N attention maps"):
        plot_attention(images, attention[:2])


def test_policy_gallery(tmp_path: Path) -> None:
    policy = Policy(
        (
            SubPolicy((Step("rotate", 1.0, 0.8), Step("gamma", 1.0, 0.5))),
            SubPolicy((Step("hflip", 1.0, 0.0), Step("noise", 0.0, 1.0))),
        )
    )
    image = np.random.default_rng(0).normal(size=(1, 32, 32)).astype(np.float32)
    fig = plot_policy_gallery(policy, image, samples=3)
    axes = fig.get_axes()
    assert len(axes) == 2 * 4
    hflip_row = axes[4:]
    original = np.asarray(hflip_row[0].get_images()[0].get_array())
    flipped = np.asarray(hflip_row[1].get_images()[0].get_array())
    assert not np.allclose(original, flipped)
    assert "hflip p1.00" in hflip_row[0].get_ylabel()
    assert_png(save_png(fig, tmp_path / "p.png"))
    with pytest.raises(ConfigError, match="empty"):
        plot_policy_gallery(Policy(), image)
