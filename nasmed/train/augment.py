"""nnU-Net's training augmentation, built from MONAI transforms, run in the loader workers.

:class:`AugmentConfig` holds one probability per part (0 switches that part off), with nnU-Net
v2's values (``nnUNetTrainer.get_training_transforms``):

========================  =====  ==========================================================
part                      p      what
========================  =====  ==========================================================
rotation                  0.2    each axis uniformly in +-30 degrees (one resampling with scaling)
scaling                   0.2    one factor for every axis in (0.7, 1.4)
elastic (off by default)  0      MONAI ``Rand3DElastic`` (nnU-Net v2 does not deform)
noise                     0.1    Gaussian, std uniform in (0, sqrt(0.1))
blur                      0.2    Gaussian, sigma uniform in (0.5, 1) per axis
brightness                0.15   multiplicative, factor in (0.75, 1.25)
contrast                  0.15   about the mean, factor in (0.75, 1.25), range preserved
low_resolution            0.25   downsample by 0.5-1 (nearest) and back (trilinear)
inverted_gamma            0.1    gamma (0.7, 1.5) on the inverted image, statistics retained
gamma                     0.3    gamma (0.7, 1.5), statistics retained
mirror                    0.5    per axis
========================  =====  ==========================================================

Each intensity part is a MONAI array transform (``RandGaussianNoise``, ``RandGaussianSmooth``,
``RandScaleIntensity``, ``RandScaleIntensityFixedMean``, ``RandSimulateLowResolution``,
``RandAdjustContrast``, ``RandFlip``). The spatial part draws nnU-Net's two independent events
(rotate with p 0.2, scale with p 0.2) and, when either fires, resamples image (bilinear) and
label (nearest) once with MONAI's ``Affine``: MONAI's ``RandAffine`` has no separate
probabilities for rotation and scaling, nor one scale factor shared by every axis. Differences
from nnU-Net, kept on purpose: blur and low-resolution act on every channel (nnU-Net: each with
p 0.5), and the resampled patch is padded with zeros where it leaves the patch (nnU-Net samples
a larger region first). 2D-like anisotropic patches get 3D rotation too.

:class:`Augmenter` is the loader's ``transform`` (see :func:`decathlon.sampling.make_loader`): a
picklable callable ``(image, label, seed) -> (image, label)`` whose result depends only on its
inputs and ``seed``, which the loader derives from ``(seed, epoch, index)``; so augmented
batches stay the same for any number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from nasmed.train.augment_config import AUGMENT_PARTS, AugmentConfig

__all__ = ["AUGMENT_PARTS", "AugmentConfig", "Augmenter"]


_GAMMA = (0.7, 1.5)
_BAND = (-0.25, 0.25)  # MONAI's factor f multiplies by (1 + f): 0.75 to 1.25


class Augmenter:
    """The loader transform of an :class:`AugmentConfig` (see the module docstring).

    Args:
        config: the probabilities.
    """

    def __init__(self, config: AugmentConfig) -> None:
        # MONAI's transforms load here, not with the config (the CLI imports the config)
        from monai.transforms import (
            Affine,
            Rand3DElasticd,
            RandAdjustContrast,
            RandFlipd,
            RandGaussianNoise,
            RandGaussianSmooth,
            RandScaleIntensity,
            RandScaleIntensityFixedMean,
            RandSimulateLowResolution,
        )

        self._affine = Affine
        self.config = c = config
        on = c.enabled
        candidates: list[tuple[float, Callable[[float], Any]]] = [
            (c.noise, lambda p: RandGaussianNoise(prob=p, mean=0.0, std=math.sqrt(0.1))),
            (c.blur, lambda p: RandGaussianSmooth((0.5, 1.0), (0.5, 1.0), (0.5, 1.0), prob=p)),
            (c.brightness, lambda p: RandScaleIntensity(factors=_BAND, prob=p)),
            (
                c.contrast,
                lambda p: RandScaleIntensityFixedMean(
                    prob=p, factors=_BAND, fixed_mean=True, preserve_range=True
                ),
            ),
            (c.low_resolution, lambda p: RandSimulateLowResolution(prob=p, zoom_range=(0.5, 1))),
            (
                c.inverted_gamma,
                lambda p: RandAdjustContrast(
                    prob=p, gamma=_GAMMA, invert_image=True, retain_stats=True
                ),
            ),
            (c.gamma, lambda p: RandAdjustContrast(prob=p, gamma=_GAMMA, retain_stats=True)),
        ]
        self.intensity = [make(p) for p, make in candidates if on and p > 0]
        keys = ("image", "label")
        self.flips = (
            [RandFlipd(keys, prob=c.mirror, spatial_axis=a) for a in range(3)]
            if c.enabled and c.mirror > 0
            else []
        )
        self.elastic = (
            Rand3DElasticd(
                keys,
                sigma_range=(9.0, 13.0),
                magnitude_range=(0.0, 200.0),
                prob=c.elastic,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            )
            if c.enabled and c.elastic > 0
            else None
        )

    def __call__(
        self, image: torch.Tensor, label: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one patch: ``image (C, *patch)`` float, ``label (1, *patch)`` integer.

        Returns new tensors of the same shapes (label as float holding integers) or the inputs
        when nothing fired.
        """
        c = self.config
        if not c.enabled:
            return image, label
        rng = np.random.RandomState(seed % 2**32)
        image, label = self._spatial(image, label, rng)
        for t in self.intensity:
            t.set_random_state(seed=int(rng.randint(2**31)))
            image = _plain(t(image))
        for flip in self.flips:
            flip.set_random_state(seed=int(rng.randint(2**31)))
            out = flip({"image": image, "label": label})
            image, label = _plain(out["image"]), _plain(out["label"])
        return image, label

    def _spatial(
        self, image: torch.Tensor, label: torch.Tensor, rng: np.random.RandomState
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        rotate = rng.uniform() < c.rotation
        scale = rng.uniform() < c.scaling
        angle = math.radians(c.rotation_degrees)
        angles = rng.uniform(-angle, angle, size=3) if rotate else np.zeros(3)
        factor = float(rng.uniform(*c.scale_range)) if scale else 1.0
        if rotate or scale:
            affine = self._affine(
                rotate_params=tuple(float(a) for a in angles),
                scale_params=(factor,) * 3,
                padding_mode="zeros",
                image_only=True,
            )
            image = _plain(affine(image, mode="bilinear"))
            label = _plain(affine(label.float(), mode="nearest"))
        if self.elastic is not None:
            self.elastic.set_random_state(seed=int(rng.randint(2**31)))
            out = self.elastic({"image": image, "label": label.float()})
            image, label = _plain(out["image"]), _plain(out["label"])
        return image, label


def _plain(x: Any) -> torch.Tensor:
    """A plain tensor (MONAI returns ``MetaTensor``s; the loader wants none of their metadata)."""
    from monai.data import MetaTensor

    t = torch.as_tensor(x)
    return t.as_tensor() if isinstance(t, MetaTensor) else t
