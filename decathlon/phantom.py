"""One synthetic case: a body-like phantom with organ-like structures, textures and geometry.

What :func:`synthesize_case` draws (tissues, intensities per modality, CT or MR-like channels,
anisotropic / rotated / oblique geometry) is described in :mod:`decathlon.synthetic`, which
writes such cases as MSD-format tasks. Deterministic: the same arguments give the same arrays.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from decathlon.io import Geometry

__all__ = ["MRI_MODALITIES", "synthesize_case"]

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
