"""Volumes: orthogonal slices with label overlays, CT window/level, modalities side by side.

Arrays are ``(X, Y, Z)`` or channel-first ``(C, X, Y, Z)``. A :class:`decathlon.io.Image` is first
brought to the closest canonical RAS orientation (axis permutations and flips, no resampling), so
every case is drawn the same way round whatever its affine; plain arrays are taken as RAS already.
Views follow the radiological convention: the patient's right on the viewer's left, anterior up
in axial views, superior up in coronal and sagittal views. Voxel spacing sets the aspect ratio.

Intensities are shown through a display window (:mod:`nasmed.viz.window`): the abdomen preset
W400/L40 for CT by default, the 0.5-99.5 percentiles of the non-zero voxels otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from nibabel.orientations import apply_orientation, io_orientation

from decathlon.datalist import Task, load_task, read_case
from decathlon.errors import DatasetError
from decathlon.io import Image
from nasmed.errors import ConfigError
from nasmed.viz.figure import hide_ticks, label_cmap, label_color, new_figure
from nasmed.viz.window import WindowLevel, WindowSpec, apply_window, resolve_window

__all__ = [
    "View",
    "canonical",
    "default_index",
    "plot_case",
    "plot_modalities",
    "plot_orthogonal",
    "take_slice",
]


class View(str, Enum):
    """A slice orientation (the axis it cuts in RAS order)."""

    SAGITTAL = "sagittal"  # a plane of constant X
    CORONAL = "coronal"  # constant Y
    AXIAL = "axial"  # constant Z

    @property
    def axis(self) -> int:
        """The array axis the view cuts."""
        return {View.SAGITTAL: 0, View.CORONAL: 1, View.AXIAL: 2}[self]


# Per view: horizontal axis, vertical axis, flip the horizontal axis, and the patient sides at the
# low/high end of the horizontal axis and the low/high end of the vertical axis (RAS: +X right,
# +Y anterior, +Z superior).
_LAYOUT = {
    View.SAGITTAL: (1, 2, True, "PAIS"),
    View.CORONAL: (0, 2, True, "LRIS"),
    View.AXIAL: (0, 1, True, "LRPA"),
}


def _channels(image: Image | np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """``(C, X, Y, Z)`` array (RAS for an Image) and its spacing."""
    if isinstance(image, Image):
        ornt = io_orientation(image.geometry.affine)
        data = np.moveaxis(apply_orientation(np.moveaxis(image.array, 0, -1), ornt), -1, 0)
        spacing = [0.0, 0.0, 0.0]
        for i, (target, _) in enumerate(ornt):
            spacing[int(target)] = image.geometry.spacing[i]
        return np.asarray(data), (spacing[0], spacing[1], spacing[2])
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ConfigError(f"expected a (X, Y, Z) or (C, X, Y, Z) array, got shape {a.shape}")
    return a, (1.0, 1.0, 1.0)


def canonical(image: Image | np.ndarray) -> np.ndarray:
    """The channel-first array of ``image`` in RAS order (arrays are returned as they are)."""
    return _channels(image)[0]


def default_index(label: np.ndarray | None, shape: Sequence[int]) -> tuple[int, int, int]:
    """Where to cut: through the rarest label present, else the volume's centre.

    The point is the voxel of the label value with the fewest voxels that lies nearest to that
    label's centre of mass, so the smallest structure (a lesion inside an organ, say) is in
    every view, and the point is inside it even when the structure is not convex.
    """
    if label is not None and np.any(label > 0):
        values, counts = np.unique(label[label > 0], return_counts=True)
        voxels = np.argwhere(label == values[np.argmin(counts)])
        centre = voxels.mean(axis=0)
        c = voxels[np.argmin(((voxels - centre) ** 2).sum(axis=1))]
        return (int(c[0]), int(c[1]), int(c[2]))
    return (shape[0] // 2, shape[1] // 2, shape[2] // 2)


def take_slice(volume: np.ndarray, view: View | str, index: int) -> np.ndarray:
    """The 2D slice of a ``(X, Y, Z)`` volume, as ``(horizontal, vertical)`` voxel axes."""
    v = View(view)
    if not 0 <= index < volume.shape[v.axis]:
        raise ConfigError(
            f"{v.value} slice {index} is outside the volume (0..{volume.shape[v.axis] - 1})"
        )
    return np.take(volume, index, axis=v.axis)


def _draw(
    ax: Axes,
    volume: np.ndarray,
    label: np.ndarray | None,
    view: View,
    index: int,
    spacing: tuple[float, float, float],
    window: WindowLevel,
    *,
    alpha: float,
    contour: bool,
    max_label: int,
    cross: tuple[int, int, int] | None = None,
) -> None:
    h_axis, v_axis, flip, letters = _LAYOUT[view]
    extent = (
        0.0,
        volume.shape[h_axis] * spacing[h_axis],
        0.0,
        volume.shape[v_axis] * spacing[v_axis],
    )
    image = apply_window(take_slice(volume, view, index), window)
    # take_slice keeps the two remaining axes in order: (h, v) for every view
    ax.imshow(
        image.T, cmap="gray", vmin=0, vmax=1, origin="lower", extent=extent, interpolation="nearest"
    )
    if label is not None:
        lab = take_slice(label, view, index).T
        if contour:
            xs = (np.arange(lab.shape[1]) + 0.5) * spacing[h_axis]
            ys = (np.arange(lab.shape[0]) + 0.5) * spacing[v_axis]
            for value in np.unique(lab):
                if value > 0:
                    ax.contour(
                        xs,
                        ys,
                        (lab == value).astype(float),
                        levels=[0.5],
                        colors=[label_color(int(value))],
                        linewidths=1.0,
                    )
        else:
            shown = np.ma.masked_equal(lab, 0)
            ax.imshow(
                shown,
                cmap=label_cmap(max_label),
                vmin=0,
                vmax=max(1, max_label),
                alpha=alpha,
                origin="lower",
                extent=extent,
                interpolation="nearest",
            )
    if cross is not None:
        ax.axvline((cross[h_axis] + 0.5) * spacing[h_axis], color="#ffff00", lw=0.6, alpha=0.6)
        ax.axhline((cross[v_axis] + 0.5) * spacing[v_axis], color="#ffff00", lw=0.6, alpha=0.6)
    if flip:
        ax.set_xlim(extent[1], extent[0])
    else:
        ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    left, right, bottom, top = letters[0], letters[1], letters[2], letters[3]
    if flip:
        left, right = right, left
    # letters name the patient side at each edge (right/left, anterior/posterior, superior/inferior)
    for x, y, text, ha, va in (
        (0.02, 0.5, left, "left", "center"),
        (0.98, 0.5, right, "right", "center"),
        (0.5, 0.02, bottom, "center", "bottom"),
        (0.5, 0.98, top, "center", "top"),
    ):
        ax.text(
            x,
            y,
            text,
            ha=ha,
            va=va,
            color="#ffff00",
            fontsize=7,
            fontweight="bold",
            transform=ax.transAxes,
        )
    hide_ticks(ax)


def _label_volume(label: Image | np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if label is None:
        return None
    lab = _channels(label)[0][0]
    if lab.shape != shape:
        raise ConfigError(f"label shape {lab.shape} differs from the image's {shape}")
    return np.rint(lab).astype(np.int64)


def _legend(fig: Figure, label: np.ndarray | None, names: Mapping[int, str] | None) -> None:
    if label is None:
        return
    values = [int(v) for v in np.unique(label) if v > 0]
    if not values:
        return
    handles = [
        Patch(color=label_color(v), label=(names or {}).get(v, f"label {v}")) for v in values
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)


def plot_orthogonal(
    image: Image | np.ndarray,
    label: Image | np.ndarray | None = None,
    *,
    index: Sequence[int] | None = None,
    channel: int = 0,
    window: WindowSpec = None,
    modality: str = "",
    label_names: Mapping[int, str] | None = None,
    alpha: float = 0.4,
    title: str | None = None,
) -> Figure:
    """Sagittal, coronal and axial slices through one point, with the label overlaid.

    Args:
        image: the volume (an :class:`~decathlon.io.Image`, or a RAS array).
        label: its label map (same grid), drawn in colour over the image; ``None`` for none.
        index: the voxel ``(x, y, z)`` (in RAS order) the slices go through; default through
            the rarest label (:func:`default_index`), or the volume's centre.
        channel: which channel of a multi-channel image to show.
        window: see :func:`resolve_window`.
        modality: the channel's modality (``"CT"`` selects the abdomen window by default).
        label_names: names for the legend, ``{1: "liver", ...}``.
        alpha: opacity of the label overlay.
        title: the figure's title.

    Returns:
        A figure with three axes (sagittal, coronal, axial); crosshairs mark the other cuts.
    """
    data, spacing = _channels(image)
    if not 0 <= channel < data.shape[0]:
        raise ConfigError(f"channel {channel} does not exist (the image has {data.shape[0]})")
    volume = data[channel]
    lab = _label_volume(label, volume.shape)
    point = tuple(index) if index is not None else default_index(lab, volume.shape)
    if len(point) != 3:
        raise ConfigError(f"index must be 3 voxel coordinates (x, y, z), got {point}")
    wl = resolve_window(window, volume, modality=modality)
    max_label = int(lab.max()) if lab is not None else 0
    fig, axes = new_figure(1, 3, size=(9.0, 3.6))
    for ax, view in zip(axes[0], View):
        _draw(
            ax,
            volume,
            lab,
            view,
            int(point[view.axis]),
            spacing,
            wl,
            alpha=alpha,
            contour=False,
            max_label=max_label,
            cross=(int(point[0]), int(point[1]), int(point[2])),
        )
        ax.set_title(f"{view.value} {int(point[view.axis])}", fontsize=9)
    _legend(fig, lab, label_names)
    fig.suptitle(
        (title + "\n" if title else "") + f"window W{wl.width:g} / L{wl.level:g}", fontsize=9
    )
    return fig


def plot_modalities(
    image: Image | np.ndarray,
    label: Image | np.ndarray | None = None,
    *,
    view: View | str = View.AXIAL,
    index: int | None = None,
    modalities: Sequence[str] | None = None,
    windows: Sequence[WindowSpec] | None = None,
    label_names: Mapping[int, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Every channel of ``image`` side by side on the same slice, label outlines on each.

    Args:
        image: a multi-channel volume (``(C, X, Y, Z)`` array or :class:`~decathlon.io.Image`).
        label: its label map, drawn as outlines; ``None`` for none.
        view: the slice orientation.
        index: the slice along ``view``'s axis; default through the rarest label.
        modalities: channel names for the titles (and ``"CT"`` windows).
        windows: one window per channel (see :func:`resolve_window`); default automatic.
        label_names: names for the legend.
        title: the figure's title.

    Returns:
        A figure with one axes per channel.
    """
    data, spacing = _channels(image)
    v = View(view)
    lab = _label_volume(label, data.shape[1:])
    names = (
        list(modalities) if modalities is not None else [f"channel {c}" for c in range(len(data))]
    )
    if len(names) != len(data):
        raise ConfigError(f"{len(names)} modality names for {len(data)} channels")
    specs: list[WindowSpec] = list(windows) if windows is not None else [None] * len(data)
    if len(specs) != len(data):
        raise ConfigError(f"{len(specs)} windows for {len(data)} channels")
    cut = index if index is not None else default_index(lab, data.shape[1:])[v.axis]
    max_label = int(lab.max()) if lab is not None else 0
    fig, axes = new_figure(1, len(data), size=(3.0 * len(data), 3.6))
    for c, ax in enumerate(axes[0]):
        wl = resolve_window(specs[c], data[c], modality=names[c])
        _draw(
            ax, data[c], lab, v, int(cut), spacing, wl, alpha=0.0, contour=True, max_label=max_label
        )
        ax.set_title(f"{names[c]}  (W{wl.width:.3g} L{wl.level:.3g})", fontsize=8)
    _legend(fig, lab, label_names)
    fig.suptitle((title + ": " if title else "") + f"{v.value} slice {int(cut)}", fontsize=9)
    return fig


def plot_case(
    task: Task | str | os.PathLike[str], case: str | None = None, **kwargs: Any
) -> Figure:
    """Orthogonal views of one case of a task: its first channel and its label.

    Args:
        task: a loaded :class:`~decathlon.datalist.Task` or a task folder.
        case: the case's name; default the first training case (else the first test case).
        kwargs: passed to :func:`plot_orthogonal` (``window``, ``channel``, ``index``, ...).

    Raises:
        DatasetError: no such case, or no cases at all.
    """
    t = task if isinstance(task, Task) else load_task(task)
    if case is not None:
        chosen = t.case(case)
    elif t.cases:
        chosen = t.cases[0]
    else:
        raise DatasetError(f"{t.dataset_json}: the task has no cases to draw")
    image, label = read_case(chosen, num_channels=t.num_channels, labels=t.labels)
    channel = int(kwargs.get("channel", 0))
    kwargs.setdefault("modality", t.modalities[channel] if channel < len(t.modalities) else "")
    kwargs.setdefault("label_names", {k: v for k, v in t.labels.items() if k != 0})
    kwargs.setdefault("title", f"{t.name}: {chosen.name}")
    return plot_orthogonal(image, label, **kwargs)
