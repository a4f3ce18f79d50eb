"""Write synthetic MSD-format tasks: real NIfTI files, real geometry, learnable but not trivial.

Each case is a body-like ellipsoid holding ``classes`` organ-like structures: smooth blobs of
decreasing size whose outlines are perturbed by smooth noise; when ``classes >= 2`` the last class
is a small lesion-like structure inside the first organ. Intensities are drawn per tissue from
distributions that overlap (contrast comparable to the noise), then blurred (partial volume), given
texture, noise and a smooth bias field. Every modality maps the tissues to different intensities.

``ct=True`` (the default when ``modalities == 1``) writes one CT-like channel in Hounsfield-like
units (air -1000, soft tissue 20..120, an unlabelled bone-like rod), stored as int16 like real CT;
otherwise MR-like channels (``"T1w"``, ``"T2w"``, ``"FLAIR"``, ``"ADC"``) in arbitrary units with a
per-case scanner gain, background exactly 0, stored as float32.

Geometry is non-trivial: anisotropic spacing (in-plane 0.7-1.0 mm, slices 1.5-3.5 mm), orientations
cycling through RAS, LPS, LAS and LPI, every third case oblique (rotated 8-20 degrees), and origins
away from zero. All cases share ``shape``.

The output is deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from decathlon.errors import DecathlonError
from decathlon.fsutil import atomic_write_json
from decathlon.io import Geometry, write_image

__all__ = [
    "EMBEDDED_TASK_NAME",
    "GENERATOR_VERSION",
    "MRI_MODALITIES",
    "embedded_task",
    "synthesize_case",
    "write_synthetic_task",
]

log = logging.getLogger(__name__)

# Bump when the generator's output changes, so cached embedded tasks are rewritten.
GENERATOR_VERSION = 3
EMBEDDED_TASK_NAME = f"Task00_NasmedSynthetic_v{GENERATOR_VERSION}"
MRI_MODALITIES = ("T1w", "T2w", "FLAIR", "ADC")
_ORIENTATIONS = ("RAS", "LPS", "LAS", "LPI")
_AXIS = {
    "R": (0, 1.0),
    "L": (0, -1.0),
    "A": (1, 1.0),
    "P": (1, -1.0),
    "S": (2, 1.0),
    "I": (2, -1.0),
}
_MARKER = "nasmed_synthetic"


# --------------------------------------------------------------------------------------------
# one case
# --------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smooth random field, zero mean and unit standard deviation.

    Wide fields are drawn on a coarser grid and interpolated up, which keeps large cases fast.
    """
    factor = max(1, int(sigma / 1.25))
    coarse = tuple(max(2, -(-n // factor)) for n in shape)
    field = ndimage.gaussian_filter(
        rng.standard_normal(coarse, dtype=np.float32), sigma / factor, mode="reflect"
    )
    if coarse != tuple(shape):
        zoom = [n / c for n, c in zip(shape, coarse)]
        field = ndimage.zoom(field, zoom, order=1, mode="nearest", grid_mode=True)
        field = field[tuple(slice(0, n) for n in shape)]
    return np.asarray((field - field.mean()) / (field.std() + 1e-12))


def _rotation(rng: np.random.Generator, max_deg: float, min_deg: float = 0.0) -> np.ndarray:
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(min_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _geometry(rng: np.random.Generator, index: int, shape: tuple[int, int, int]) -> Geometry:
    inplane = rng.uniform(0.7, 1.0)
    spacing = np.array([inplane, inplane, rng.uniform(1.5, 3.5)])
    flips = np.zeros((3, 3))
    for voxel_axis, code in enumerate(_ORIENTATIONS[index % len(_ORIENTATIONS)]):
        world_axis, sign = _AXIS[code]
        flips[world_axis, voxel_axis] = sign
    rot = _rotation(rng, 20.0, 8.0) if index % 3 == 2 else np.eye(3)
    affine = np.eye(4)
    affine[:3, :3] = rot @ flips @ np.diag(spacing)
    centre = rng.uniform(-40, 40, size=3)
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return Geometry(np.round(affine, 6), shape)


def _blob(
    rng: np.random.Generator,
    coords: np.ndarray,
    centre: np.ndarray,
    radii: np.ndarray,
    roughness: np.ndarray,
) -> np.ndarray:
    """An organ-like blob: a rotated ellipsoid whose outline is perturbed by smooth noise."""
    rot = _rotation(rng, 60.0)
    local = np.einsum("ij,j...->i...", rot.T, coords - centre[:, None, None, None])
    r = np.sqrt(np.sum((local / radii[:, None, None, None]) ** 2, axis=0))
    return np.asarray(r + 0.18 * roughness < 1.0)


def _tissue_map(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing: np.ndarray,
    classes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue index per voxel (0 outside, 1 body, 1 + k organ k), label, and a bone mask."""
    half = (np.asarray(shape) - 1) / 2.0
    axes = [(np.arange(n) - half[i]) * spacing[i] for i, n in enumerate(shape)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij")).astype(np.float32)
    fov = np.asarray(shape) * spacing
    body_r = fov * np.array([0.46, 0.40, 0.75]) * rng.uniform(0.9, 1.0, 3)
    rough = _smooth_noise(rng, shape, 3.0)
    body = _blob(rng, coords, rng.normal(0, 0.02, 3) * fov, body_r, 0.5 * rough)
    # bone-like rod along the slice axis, posterior (negative second axis)
    rod_c = np.array([rng.normal(0, 0.03) * fov[0], -0.55 * body_r[1], 0.0])
    rod = np.hypot(coords[0] - rod_c[0], coords[1] - rod_c[1]) < 0.12 * body_r[1]
    rod &= body
    tissue = np.where(body, 1, 0).astype(np.uint8)
    deep = ndimage.binary_erosion(body, iterations=2)  # organs keep off the body's surface
    label = np.zeros(shape, np.uint8)
    inner = float(np.min(body_r[:2]))
    sizes = [0.6 * 0.65**k for k in range(classes)]
    min_r = 2.2 * float(np.max(spacing[:2]))
    organ1 = core = np.zeros(shape, bool)
    for k in range(1, classes + 1):
        small = classes >= 2 and k == classes
        best = np.zeros(shape, bool)
        for _attempt in range(30):
            if small:
                r_xy = min(max(min_r, 0.09 * inner), 0.45 * sizes[k - 2] * inner)
                r = r_xy * rng.uniform(0.9, 1.3, 3)
                r[2] = max(r[2], 1.6 * spacing[2])
                inside = np.argwhere(core if core.any() else organ1 if organ1.any() else body)
                pick = inside[rng.integers(len(inside))]
                centre = (pick - half) * spacing
            else:
                r = sizes[k - 1] * inner * rng.uniform(0.8, 1.2, 3) * np.array([1, 1, 1.4])
                room = np.maximum(0.7 * body_r - r, 0.05 * body_r)
                centre = rng.uniform(-1, 1, 3) * room
            mask = _blob(rng, coords, centre, r, _smooth_noise(rng, shape, 2.0)) & deep & ~rod
            if small and organ1.sum() > 64:
                mask &= organ1  # the lesion sits inside organ 1
            elif k > 1 and not small:
                mask &= label == 0  # organs do not overlap
            if mask.sum() > best.sum():
                best = mask
            expected = 4.0 / 3.0 * np.pi * float(np.prod(r / spacing))
            if best.sum() >= max(8.0, 0.5 * expected):
                break
        mask = best
        if not mask.any():  # tiny grids: fall back to a 3x3x3 neighbourhood
            allowed = organ1 if small and organ1.any() else deep & (label == 0) & ~rod
            allowed = allowed if allowed.any() else body
            pick = np.argwhere(allowed)[rng.integers(int(allowed.sum()))]
            mask = np.zeros(shape, bool)
            mask[tuple(slice(max(int(p) - 1, 0), int(p) + 2) for p in pick)] = True
            mask &= allowed
        label[mask] = k
        tissue[mask] = 1 + k
        if k == 1:
            organ1 = mask
            core = ndimage.binary_erosion(organ1, iterations=2)
    return tissue, label, rod


def _protocol(seed: int, classes: int, modalities: int, ct: bool) -> np.ndarray:
    """Mean intensity per (modality, tissue), shared by all cases of a task."""
    rng = np.random.default_rng([seed, 1_000_003])
    n_tissue = classes + 2
    means = np.zeros((modalities, n_tissue))
    if ct:
        means[0, 0] = -1000.0
        means[0, 1] = 30.0
        organ = rng.uniform(20, 120, classes)
        organ[0] = rng.uniform(55, 75)
        if classes >= 2:
            organ[-1] = organ[0] - rng.uniform(50, 65)  # hypodense lesion
        means[0, 2:] = organ
        return means
    for m in range(modalities):
        means[m, 1] = 1.0
        contrast = rng.uniform(0.12, 0.45, classes) * rng.choice([-1.0, 1.0], classes)
        means[m, 2:] = 1.0 + contrast
    return means


def synthesize_case(
    seed: int,
    index: int,
    *,
    shape: tuple[int, int, int] = (48, 48, 32),
    classes: int = 2,
    modalities: int = 1,
    ct: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """Make one case in memory: image ``(C, X, Y, Z)``, label ``(X, Y, Z)`` uint8, geometry.

    Same arguments, same arrays. ``ct`` defaults to ``modalities == 1``.
    """
    ct = (modalities == 1) if ct is None else ct
    if ct and modalities != 1:
        raise ValueError("ct=True needs modalities=1")
    rng = np.random.default_rng([seed, index])
    geometry = _geometry(rng, index, shape)
    spacing = np.asarray(geometry.spacing)
    tissue, label, rod = _tissue_map(rng, shape, spacing, classes)
    means = _protocol(seed, classes, modalities, ct)
    body = tissue > 0
    bias = np.exp(0.12 * _smooth_noise(rng, shape, max(shape) / 3.0))
    image = np.empty((modalities, *shape), np.float32)
    for m in range(modalities):
        jitter = 1.0 + rng.normal(0, 0.03, means.shape[1])
        mean_map = (means[m] * (jitter if not ct else 1.0))[tissue]
        texture = _smooth_noise(rng, shape, 1.2)
        noise = rng.standard_normal(shape)
        if ct:
            # fat / muscle mixture in the body outside the organs: structured, unlabelled
            fat = np.tanh(1.5 * _smooth_noise(rng, shape, 2.5))
            mean_map = np.where(tissue == 1, mean_map - 50.0 + 70.0 * fat, mean_map)
            mean_map = np.where(rod, 450.0, mean_map)
            vol = ndimage.gaussian_filter(mean_map, 0.6) + 10.0 * texture * body
            vol += 22.0 * noise + 8.0 * (bias - 1.0) / 0.12
            vol = np.clip(np.rint(vol), -1024, 3071)
        else:
            vol = ndimage.gaussian_filter(mean_map, 0.6) * (1.0 + 0.08 * texture)
            vol = vol * bias + 0.16 * noise * body
            vol = np.where(ndimage.binary_dilation(body, iterations=1), np.abs(vol), 0.0)
            vol *= rng.uniform(200, 800)
        image[m] = vol
    return image, label, geometry


# --------------------------------------------------------------------------------------------
# a task folder
# --------------------------------------------------------------------------------------------


def _check_args(
    cases: int, shape: tuple[int, ...], classes: int, modalities: int, test_cases: int
) -> tuple[int, int, int]:
    if cases < 1:
        raise DecathlonError(f"synthetic task needs at least 1 training case, not {cases}")
    if test_cases < 0:
        raise DecathlonError(f"test_cases must be >= 0, not {test_cases}")
    if len(shape) != 3 or min(shape) < 8:
        raise DecathlonError(f"synthetic shape must be 3 sizes of at least 8 voxels, not {shape}")
    if not 1 <= classes <= 8:
        raise DecathlonError(f"synthetic classes must be 1..8 foreground classes, not {classes}")
    if not 1 <= modalities <= 4:
        raise DecathlonError(f"synthetic modalities must be 1..4, not {modalities}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DecathlonError(f"{out}: output path exists and is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DecathlonError(
            f"{out}: output folder exists and is not empty; choose a new folder or pass --overwrite"
        )


def write_synthetic_task(
    out_dir: str | os.PathLike[str],
    *,
    cases: int = 8,
    shape: tuple[int, int, int] = (48, 48, 32),
    classes: int = 2,
    modalities: int = 1,
    seed: int = 0,
    test_cases: int = 2,
    name: str | None = None,
    ct: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic MSD task into the folder ``out_dir`` (which becomes the task folder).

    The task is written into a hidden temporary folder beside ``out_dir`` and renamed into place
    when complete, so an interrupted run leaves nothing behind.

    Args:
        out_dir: the task folder to create; it must not exist, or be empty (or ``overwrite``).
        cases: training cases (``synth_000`` ...), each with a label.
        shape: spatial shape of every case, ``(X, Y, Z)``.
        classes: foreground classes (labels 1..classes).
        modalities: channels, 1..4; more than one gives a 4D image per case.
        seed: random seed; the same arguments give the same bytes.
        test_cases: cases in ``imagesTs/``, without labels.
        name: the ``name`` in dataset.json (default ``"Synthetic"``).
        ct: one CT-like channel in Hounsfield-like units; default ``modalities == 1``.
        overwrite: replace a non-empty ``out_dir``.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        DecathlonError: ``out_dir`` is a file or a non-empty folder, or an argument is invalid.
    """
    out = Path(out_dir)
    spatial = _check_args(cases, shape, classes, modalities, test_cases)
    ct = (modalities == 1) if ct is None else ct
    if ct and modalities != 1:
        raise DecathlonError("a CT-like synthetic task has exactly 1 modality")
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {
        "version": GENERATOR_VERSION,
        "cases": cases,
        "shape": list(spatial),
        "classes": classes,
        "modalities": modalities,
        "seed": seed,
        "test_cases": test_cases,
        "ct": ct,
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_into(tmp, params, name or "Synthetic")
        _install(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote synthetic task %s (%d training, %d test cases)", out, cases, test_cases)
    return out


def _write_into(folder: Path, params: dict[str, Any], name: str) -> None:
    shape = tuple(params["shape"])
    classes, modalities, ct = params["classes"], params["modalities"], params["ct"]
    names = ("CT",) if ct else MRI_MODALITIES[:modalities]
    training, test = [], []
    total = params["cases"] + params["test_cases"]
    for i in range(total):
        image, label, geometry = synthesize_case(
            params["seed"], i, shape=shape, classes=classes, modalities=modalities, ct=ct
        )
        case = f"synth_{i:03d}"
        dtype = np.int16 if ct else np.float32
        if i < params["cases"]:
            write_image(folder / "imagesTr" / f"{case}.nii.gz", image, geometry, dtype=dtype)
            write_image(folder / "labelsTr" / f"{case}.nii.gz", label, geometry, dtype=np.uint8)
            training.append(
                {"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}
            )
        else:
            write_image(folder / "imagesTs" / f"{case}.nii.gz", image, geometry, dtype=dtype)
            test.append(f"./imagesTs/{case}.nii.gz")
    labels = {"0": "background"}
    for k in range(1, classes + 1):
        small = classes >= 2 and k == classes
        labels[str(k)] = "lesion" if small else f"organ{k}"
    dataset = {
        "name": name,
        "description": "Synthetic MSD-format task written by nasmed (decathlon.synthetic)",
        "reference": "nasmed",
        "licence": "CC-BY-SA 4.0",
        "release": f"generator v{GENERATOR_VERSION}",
        "tensorImageSize": "4D" if modalities > 1 else "3D",
        "modality": {str(i): n for i, n in enumerate(names)},
        "labels": labels,
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": test,
        _MARKER: params,
    }
    atomic_write_json(folder / "dataset.json", dataset)


def _install(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists() and overwrite:
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "task")
        try:
            os.replace(tmp, out)
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.replace(tmp, out)
    except OSError as exc:
        raise DecathlonError(f"{out}: cannot create the task folder ({exc.strerror})") from exc


# --------------------------------------------------------------------------------------------
# the embedded default task
# --------------------------------------------------------------------------------------------

EMBEDDED_PARAMS: dict[str, Any] = {
    "cases": 8,
    "shape": (48, 48, 32),
    "classes": 2,
    "modalities": 1,
    "seed": 0,
    "test_cases": 2,
}


def _is_complete(folder: Path) -> bool:
    try:
        data = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    params = data.get(_MARKER, {})
    expected = dict(
        EMBEDDED_PARAMS, shape=list(EMBEDDED_PARAMS["shape"]), version=GENERATOR_VERSION, ct=True
    )
    if params != expected:
        return False
    files = [e["image"] for e in data["training"]] + [e["label"] for e in data["training"]]
    return all((folder / f).is_file() for f in files + list(data["test"]))


def embedded_task(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The embedded default task (CT-like, 8 + 2 cases of 48x48x32, 2 classes, seed 0).

    Written once into ``cache_dir``, else ``$NASMED_CACHE``, else ``~/.cache/nasmed``, and reused
    when already there and complete. Safe when several processes ask at the same time.

    Returns:
        The task folder ``<cache>/Task00_NasmedSynthetic_v<N>``.
    """
    root = Path(cache_dir or os.environ.get("NASMED_CACHE") or Path.home() / ".cache" / "nasmed")
    folder = root / EMBEDDED_TASK_NAME
    for attempt in range(3):
        if _is_complete(folder):
            return folder
        log.info("writing the embedded synthetic task to %s", folder)
        stale = folder.exists()  # incomplete, or from an older generator
        try:
            write_synthetic_task(folder, name="NasmedSynthetic", overwrite=stale, **EMBEDDED_PARAMS)
        except (DecathlonError, OSError):
            # another process may have moved or written the folder meanwhile: look again
            if attempt == 2 and not _is_complete(folder):
                raise
    return folder
