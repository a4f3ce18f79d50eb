"""A synthetic case where the network's architecture matters: thin tubes and hollow spheres.

Built for the search-validity protocol (``benchmarks/search_validity.py``): a network that sees
only a few voxels cannot solve it, and one that never looks at full resolution cannot either.

- **vessels** (label 1): 3-5 smooth random curves of radius 1.2-2.0 voxels, bright (thin enough
  that a network working only at half resolution blurs them, thick enough to be learnt in a
  short training run: at 0.7-1.5 voxels, runs of 400 steps learnt them in 1 of 8, so the
  vessel Dice was 0 or not by chance and no architecture ranking survived a change of seed);
- **cysts** (label 2): 2-4 spheres of radius 4 to a quarter of the smallest side, whose image
  shows only a thin bright shell; the label is the filled sphere, so the interior (as dark as the
  background) can only be labelled from context at least a radius away;
- **distractors** (unlabelled): small solid bright balls, which look like a tube or a shell
  within a 3-voxel window.

Bright means +1 over a background of smooth texture (sd 0.25) and white noise (sd 0.35), lightly
blurred (partial volume). The grid is isotropic 1 mm, RAS, so preprocessing resamples nothing.
Deterministic: the same arguments give the same arrays.

:func:`synthesize_context_case` (the ``"context"`` scene) moves the difficulty from "how far does
the network see" to "what does it do with what it sees at coarse scale", for spaces whose finest
level is fixed and whose searched cells work at 1/4 resolution and below:

- **cells** (label 1, the only class): hollow shells of radius 5 to a quarter of the smallest
  side *with a nucleus* (a small solid bright ball anywhere within half the radius of the
  centre), labelled filled; about as many shells of the same sizes **without** a nucleus are
  unlabelled. Whether a shell voxel is foreground is decided by what lies up to 1.5 radii
  (7+ voxels) away, which only the coarse levels see; the nucleus looks like the distractors
  (the same balls lie outside the shells);
- **clutter** (unlabelled): thin bright tubes as the vessels above, crossing shells and
  background alike.

One class, so that the score is the coarse levels' work alone: on a space whose finest level is
fixed, a fine-scale class adds training-seed noise and no architecture signal (measured on
8 Dec 2026, docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from decathlon.io import Geometry
from decathlon.phantom import _smooth_noise

__all__ = [
    "CONTEXT_LABELS",
    "STRUCTURE_LABELS",
    "synthesize_context_case",
    "synthesize_structures_case",
]

#: Label value -> name.
STRUCTURE_LABELS = {1: "vessel", 2: "cyst"}
#: Label value -> name, ``"context"`` scene.
CONTEXT_LABELS = {1: "cell"}


def _tube(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, float]:
    """The distance map to a smooth random curve crossing the volume, and the tube's radius."""
    size = np.asarray(shape, np.float64)
    start, end = rng.uniform(0, size), rng.uniform(0, size)
    t = np.linspace(0.0, 1.0, 8 * int(size.max()))[:, None]
    path = start + t * (end - start)
    for k in (1, 2, 3):
        amp = rng.normal(0, size.min() / (5.0 * k), 3)
        path += amp * np.sin(np.pi * k * t + rng.uniform(0, 2 * np.pi))
    idx = np.rint(path).astype(int)
    inside = np.all((idx >= 0) & (idx < size.astype(int)), axis=1)
    centre = np.ones(shape, bool)
    centre[tuple(idx[inside].T)] = False
    return ndimage.distance_transform_edt(centre), float(rng.uniform(1.2, 2.0))


def _canvas(
    shape: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voxel coordinates ``(3, *shape)``, the sides, an empty label and an empty bright map."""
    grid = np.indices(shape, dtype=np.float32)
    return (
        grid,
        np.asarray(shape, np.float32),
        np.zeros(shape, np.uint8),
        np.zeros(shape, np.float32),
    )


def synthesize_structures_case(
    seed: int, index: int, *, shape: tuple[int, int, int] = (48, 48, 48)
) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """One case: image ``(1, X, Y, Z)`` float32, label ``(X, Y, Z)`` uint8 (0, 1, 2), geometry."""
    rng = np.random.default_rng([seed, index, 17])
    grid, size, label, bright = _canvas(shape)
    r_max = max(4.5, min(shape) / 4.0)
    for _ in range(int(rng.integers(2, 5))):
        r = float(rng.uniform(4.0, r_max))
        c = rng.uniform(r + 1, size - r - 1).astype(np.float32)
        d = _distance(grid, c)
        label[d <= r] = 2
        bright[np.abs(d - r) <= 0.75] = 1.0
    for _ in range(int(rng.integers(2, 5))):
        r = float(rng.uniform(1.5, 2.5))
        c = rng.uniform(r, size - r).astype(np.float32)
        solid = (_distance(grid, c) <= r) & (label == 0)
        bright[solid] = 1.0
    for _ in range(int(rng.integers(3, 6))):
        dist, radius = _tube(rng, shape)
        tube = dist <= radius
        label[tube] = 1
        bright[tube] = 1.0
    return _finish(rng, bright, shape), label, Geometry(np.eye(4), shape)


def _distance(grid: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(axis=0))


def _finish(
    rng: np.random.Generator, bright: np.ndarray, shape: tuple[int, int, int]
) -> np.ndarray:
    image = ndimage.gaussian_filter(bright, 0.5)
    image += 0.25 * _smooth_noise(rng, shape, 2.0) + 0.35 * rng.standard_normal(shape)
    return image[None].astype(np.float32)


def synthesize_context_case(
    seed: int, index: int, *, shape: tuple[int, int, int] = (32, 32, 32)
) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """One ``"context"`` case: shells with a nucleus are label 1, shells without are background.

    Returns image ``(1, X, Y, Z)`` float32, label ``(X, Y, Z)`` uint8 (0, 1), geometry. Every
    case has at least one shell of each kind; shells do not overlap.
    """
    rng = np.random.default_rng([seed, index, 29])
    grid, size, label, bright = _canvas(shape)
    r_max = max(5.5, min(shape) / 4.0)
    placed: list[tuple[np.ndarray, float]] = []
    n_shells = int(rng.integers(2, 5))
    kinds = rng.permutation([k % 2 == 0 for k in range(n_shells)])  # nucleus or not, both kinds
    for nucleus in kinds:
        for _ in range(50):  # rejection: shells do not touch
            r = float(rng.uniform(5.0, r_max))
            c = rng.uniform(r + 1, size - r - 1).astype(np.float32)
            if all(np.linalg.norm(c - c2) > r + r2 + 2 for c2, r2 in placed):
                break
        else:
            continue
        placed.append((c, r))
        d = _distance(grid, c)
        bright[np.abs(d - r) <= 0.75] = 1.0
        if nucleus:
            label[d <= r] = 1
            offset = rng.normal(size=3)
            offset *= rng.uniform(0.0, r / 2.0) / np.linalg.norm(offset)
            core = (c + offset).astype(np.float32)
            bright[_distance(grid, core) <= rng.uniform(1.5, 2.5)] = 1.0
    for _ in range(int(rng.integers(2, 5))):  # the same balls outside every shell
        r = float(rng.uniform(1.5, 2.5))
        c = rng.uniform(r, size - r).astype(np.float32)
        if all(np.linalg.norm(c - c2) > r + r2 + 1 for c2, r2 in placed):
            bright[_distance(grid, c) <= r] = 1.0
    for _ in range(int(rng.integers(2, 5))):
        dist, radius = _tube(rng, shape)
        bright[dist <= radius] = 1.0
    return _finish(rng, bright, shape), label, Geometry(np.eye(4), shape)
