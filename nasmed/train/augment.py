"""nnU-Net's training augmentation, built from MONAI transforms, run in the loader workers.

:class:`AugmentConfig` holds one probability per part (0 switches that part off), with nnU-Net
v2's values (``nnUNetTrainer.get_training_transforms``, batchgeneratorsv2):

========================  =====  ============  ==============================================
part                      p      per channel   what
========================  =====  ============  ==============================================
rotation                  0.2    -             each axis uniformly in +-30 degrees
scaling                   0.2    -             one factor for every axis in (0.7, 1.4)
elastic (off by default)  0      -             MONAI ``Rand3DElastic`` (nnU-Net v2: none)
noise                     0.1    all, 1 sigma  Gaussian, std uniform in (0, 0.1)
blur                      0.2    each p 0.5    Gaussian, sigma uniform in (0.5, 1) per axis
brightness                0.15   each          multiplicative, factor ``BG(0.75, 1.25)``
contrast                  0.15   each          about the mean, ``BG(0.75, 1.25)``, range kept
low_resolution            0.25   each p 0.5    down by one zoom in (0.5, 1) (nearest), back up
                                               (trilinear)
inverted_gamma            0.1    each          gamma ``BG(0.7, 1.5)`` of the inverted image,
                                               statistics retained
gamma                     0.3    each          gamma ``BG(0.7, 1.5)``, statistics retained
mirror                    0.5    -             per axis
========================  =====  ============  ==============================================

``p`` is the probability that a part fires for a patch (nnU-Net's ``RandomTransform``
``apply_probability``). When it fires, a part marked "each" acts on every channel independently
(its own random parameters; "p 0.5": each channel only with probability 0.5, nnU-Net's
``p_per_channel``, ``synchronize_channels=False``); noise draws one sigma for all channels
(``synchronize_channels=True``). ``BG(lo, hi)`` is nnU-Net's ``BGContrast`` draw: with
probability 0.5 uniform in (lo, 1), otherwise uniform in (1, hi) (so gamma is below 1 as often
as above, unlike a plain uniform over (0.7, 1.5)).

Each intensity part is a MONAI array transform (``RandGaussianNoise``, ``GaussianSmooth``,
``ScaleIntensity``, ``ScaleIntensityFixedMean``, ``RandSimulateLowResolution``,
``AdjustContrast``, ``RandFlip``), with the parameters drawn here so that the probabilities
and per-channel draws are nnU-Net's (MONAI's random transforms draw one parameter for all
channels). The spatial part draws nnU-Net's two independent events (rotate with p 0.2, scale
with p 0.2) and, when either fires, resamples image (bilinear) and label (nearest) once with
MONAI's ``Affine``: MONAI's ``RandAffine`` has no separate probabilities for rotation and
scaling, nor one scale factor shared by every axis. The remaining differences from nnU-Net are
listed in docs/training.md.

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

__all__ = ["AUGMENT_PARTS", "AugmentConfig", "Augmenter", "bg_contrast"]


_GAMMA = (0.7, 1.5)
_BAND = (0.75, 1.25)  # brightness and contrast multipliers
_NOISE_STD = 0.1  # batchgeneratorsv2 samples "noise_variance" (0, 0.1) and uses it as the std
_BLUR_SIGMA = (0.5, 1.0)
_LOW_RES_ZOOM = (0.5, 1.0)
#: nnU-Net's ``p_per_channel`` of the parts that act on each channel on their own.
PER_CHANNEL = {
    "blur": 0.5,
    "brightness": 1.0,
    "contrast": 1.0,
    "low_resolution": 0.5,
    "inverted_gamma": 1.0,
    "gamma": 1.0,
}

#: One channel ``(1, *patch)``, a random state -> that channel transformed.
ChannelFn = Callable[[torch.Tensor, np.random.RandomState], torch.Tensor]


def bg_contrast(rng: np.random.RandomState, low: float, high: float) -> float:
    """nnU-Net's ``BGContrast`` draw: uniform in ``(low, 1)`` with probability 0.5 (if
    ``low < 1``), otherwise uniform in ``(max(low, 1), high)``."""
    if rng.uniform() < 0.5 and low < 1:
        return float(rng.uniform(low, 1.0))
    return float(rng.uniform(max(low, 1.0), high))


class Augmenter:
    """The loader transform of an :class:`AugmentConfig` (see the module docstring).

    Args:
        config: the probabilities.
    """

    def __init__(self, config: AugmentConfig) -> None:
        # MONAI's transforms load here, not with the config (the CLI imports the config)
        from monai.transforms import (
            AdjustContrast,
            Affine,
            GaussianSmooth,
            Rand3DElasticd,
            RandFlipd,
            RandGaussianNoise,
            RandSimulateLowResolution,
            ScaleIntensity,
            ScaleIntensityFixedMean,
        )

        self._affine = Affine
        self.config = c = config
        on = c.enabled
        noise = RandGaussianNoise(prob=1.0, mean=0.0, std=_NOISE_STD)
        low_res = RandSimulateLowResolution(prob=1.0, zoom_range=_LOW_RES_ZOOM)

        def blur(x: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
            sigma = [float(s) for s in rng.uniform(*_BLUR_SIGMA, size=x.ndim - 1)]
            return _plain(GaussianSmooth(sigma=sigma)(x))

        def brightness(x: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
            return _plain(
                ScaleIntensity(minv=None, maxv=None, factor=bg_contrast(rng, *_BAND) - 1)(x)
            )

        def contrast(x: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
            factor = bg_contrast(rng, *_BAND) - 1
            return _plain(
                ScaleIntensityFixedMean(factor=factor, preserve_range=True, fixed_mean=True)(x)
            )

        def low_resolution(x: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
            low_res.set_random_state(seed=int(rng.randint(2**31)))
            return _plain(low_res(x))

        def gamma(invert: bool) -> ChannelFn:
            def run(x: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
                g = bg_contrast(rng, *_GAMMA)
                return _plain(AdjustContrast(g, invert_image=invert, retain_stats=True)(x))

            return run

        per_channel: list[tuple[str, ChannelFn]] = [
            ("blur", blur),
            ("brightness", brightness),
            ("contrast", contrast),
            ("low_resolution", low_resolution),
            ("inverted_gamma", gamma(True)),
            ("gamma", gamma(False)),
        ]
        self._noise = noise
        # (name, p, p per channel or None for all channels at once, fn); in nnU-Net's order
        self.intensity: list[tuple[str, float, float | None, ChannelFn]] = []
        if on and c.noise > 0:
            self.intensity.append(("noise", c.noise, None, self._add_noise))
        for name, fn in per_channel:
            if on and getattr(c, name) > 0:
                self.intensity.append((name, getattr(c, name), PER_CHANNEL[name], fn))
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

    def __reduce__(self) -> tuple[type[Augmenter], tuple[AugmentConfig]]:
        """Pickled as its config and rebuilt (the parts are closures): loader workers started
        by spawn or forkserver (a comparison's worker processes; Python 3.14's default on
        Linux) get the same transform."""
        return (Augmenter, (self.config,))

    def _add_noise(self, x: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
        """Gaussian noise on all channels, one std for all of them (MONAI draws it)."""
        self._noise.set_random_state(seed=int(rng.randint(2**31)))
        return _plain(self._noise(x))

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
        for _, p, p_channel, fn in self.intensity:
            if rng.uniform() >= p:
                continue
            if p_channel is None:
                image = fn(image, rng)
                continue
            channels = [image[k : k + 1] for k in range(image.shape[0])]
            chosen = rng.uniform(size=len(channels)) < p_channel
            if chosen.any():
                image = torch.cat(
                    [fn(ch, rng) if pick else ch for ch, pick in zip(channels, chosen, strict=True)]
                )
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
