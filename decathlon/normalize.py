"""Intensity normalisation per channel, as a :class:`~decathlon.plan.ChannelNorm` says.

- ``"ct"``: clip to the dataset's foreground 0.5-99.5 percentiles, subtract the foreground mean,
  divide by the foreground standard deviation (the same numbers for every case).
- ``"zscore"``: subtract the image's own mean and divide by its standard deviation; with
  ``use_nonzero_mask`` only voxels inside the non-zero mask are used and the rest are set to 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from decathlon.plan import ChannelNorm

__all__ = ["normalize"]

_EPS = 1e-8


def normalize(
    array: np.ndarray, norms: Sequence[ChannelNorm], mask: np.ndarray | None = None
) -> np.ndarray:
    """Normalise a ``(C, X, Y, Z)`` image; returns a new float32 array.

    Args:
        array: the image (cropped, before resampling).
        norms: one :class:`ChannelNorm` per channel.
        mask: ``(X, Y, Z)`` non-zero mask for ``use_nonzero_mask`` z-scoring.
    """
    if len(norms) != array.shape[0]:
        raise ValueError(f"{len(norms)} normalisations for an image with {array.shape[0]} channels")
    out = np.empty(array.shape, dtype=np.float32)
    for c, norm in enumerate(norms):
        x = np.asarray(array[c], dtype=np.float32)
        if norm.scheme == "ct":
            assert norm.clip_low is not None and norm.clip_high is not None
            assert norm.mean is not None and norm.std is not None
            np.clip(x, norm.clip_low, norm.clip_high, out=out[c])
            out[c] -= norm.mean
            out[c] /= max(norm.std, _EPS)
        elif norm.use_nonzero_mask and mask is not None and mask.any():
            inside = x[mask]
            mean, std = float(inside.mean()), float(inside.std())
            out[c] = 0.0
            out[c][mask] = (inside - mean) / max(std, _EPS)
        else:
            mean, std = float(x.mean()), float(x.std())
            out[c] = (x - mean) / max(std, _EPS)
    return out
