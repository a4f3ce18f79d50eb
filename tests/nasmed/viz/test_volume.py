"""Orthogonal slices, modalities side by side, one case of a task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import AxesImage

from decathlon.io import Geometry, Image
from nasmed.errors import ConfigError
from nasmed.viz.figure import save_png
from nasmed.viz.volume import (
    View,
    canonical,
    default_index,
    plot_case,
    plot_modalities,
    plot_orthogonal,
    take_slice,
)

from .conftest import assert_png


def _volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.normal(40.0, 30.0, (20, 16, 12))
    label = np.zeros((20, 16, 12), dtype=np.uint8)
    label[4:10, 5:9, 3:7] = 1
    label[6:8, 6:8, 4:6] = 2
    return image, label


def test_orthogonal_views(tmp_path: Path) -> None:
    image, label = _volume()
    fig = plot_orthogonal(image, label, modality="CT", label_names={1: "organ", 2: "lesion"})
    axes = fig.get_axes()
    assert [ax.get_title().split()[0] for ax in axes] == ["sagittal", "coronal", "axial"]
    for ax in axes:
        images = [a for a in ax.get_children() if isinstance(a, AxesImage)]
        assert len(images) == 2  # the slice and the label overlay
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["organ", "lesion"]
    assert "W400 / L40" in fig._suptitle.get_text()  # CT: the abdomen window
    assert_png(save_png(fig, tmp_path / "o.png"))


def test_orthogonal_cuts_through_the_foreground_and_windows_the_slice() -> None:
    image, label = _volume()
    assert default_index(label, label.shape) == (6, 6, 4)  # in the lesion (label 2)
    assert default_index(None, label.shape) == (10, 8, 6)
    ring = np.zeros((9, 9, 3), dtype=np.uint8)
    ring[1:8, 1:8, 1] = 1
    ring[3:6, 3:6, 1] = 0  # a ring: its centre of mass (4, 4, 1) is not in it
    point = default_index(ring, ring.shape)
    assert ring[point] == 1 and point in {(2, 4, 1), (4, 2, 1), (6, 4, 1), (4, 6, 1)}
    fig = plot_orthogonal(image, label, window=(100, 0))
    axial = fig.get_axes()[2]
    shown = axial.get_images()[0].get_array()
    expected = np.clip((take_slice(image, View.AXIAL, 4) + 50) / 100, 0, 1).T
    np.testing.assert_allclose(np.asarray(shown), expected)
    assert axial.get_title() == "axial 4"


def test_image_is_shown_in_ras_order() -> None:
    # an LPS image: voxel (0, 0, 0) is the most right and most anterior one, so in RAS order it
    # lies at the high end of x and y
    array = np.zeros((1, 4, 5, 3), dtype=np.float32)
    array[0, 0, 0, 0] = 1.0
    affine = np.diag([-2.0, -1.0, 3.0, 1.0])
    ras = canonical(Image(array, Geometry(affine, (4, 5, 3))))
    assert ras.shape == (1, 4, 5, 3)
    assert ras[0, 3, 4, 0] == 1.0


def test_errors() -> None:
    image, label = _volume()
    with pytest.raises(ConfigError, match="channel 1 does not exist"):
        plot_orthogonal(image, channel=1)
    with pytest.raises(ConfigError, match="label shape"):
        plot_orthogonal(image, label[:-1])
    with pytest.raises(ConfigError, match="outside the volume"):
        plot_orthogonal(image, index=(0, 0, 12))


def test_modalities_side_by_side(tmp_path: Path) -> None:
    image, label = _volume()
    stack = np.stack([image, -image, image * 2])
    fig = plot_modalities(stack, label, modalities=["T1w", "T2w", "FLAIR"], view="coronal")
    axes = fig.get_axes()
    assert len(axes) == 3
    assert [ax.get_title().split()[0] for ax in axes] == ["T1w", "T2w", "FLAIR"]
    assert all(len(ax.collections) >= 2 for ax in axes)  # one outline per label value
    assert "coronal slice 6" in fig._suptitle.get_text()
    with pytest.raises(ConfigError, match="2 modality names for 3 channels"):
        plot_modalities(stack, modalities=["a", "b"])
    assert_png(save_png(fig, tmp_path / "m.png"))


def test_plot_case(tiny_task: Path, tmp_path: Path) -> None:
    fig = plot_case(tiny_task)
    assert len(fig.get_axes()) == 3
    assert "synth_000" in fig._suptitle.get_text()
    fig = plot_case(tiny_task, "synth_001", window="bone")
    assert "W1800 / L400" in fig._suptitle.get_text()
    assert_png(save_png(fig, tmp_path / "case.png"))
