"""Augmentation operations for CT/MR slices, on (B, C, H, W) float tensors.

Every operation takes a batch, a magnitude in [0, 1] and a CPU ``torch.Generator`` (random signs
and fields are drawn per image), and returns a batch of the same shape, dtype and device. At
magnitude 0 every operation is the identity except the flips, which have no magnitude. The pool
suits medical slices (affine, elastic, intensity, noise, blur, bias field); natural-image ops
such as invert, solarize or posterize are left out (REFERENCE §6). Intensity ops work on
z-scored slices: they act around each image's own mean and range.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["OPS", "apply_op", "op_names", "register_op"]

OpFn = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]
OPS: dict[str, OpFn] = {}

# Largest effect of each op, reached at magnitude 1.
MAX_ROTATE_DEG = 30.0
MAX_SCALE = 0.3
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.2
MAX_ELASTIC = 0.08  # displacement, as a fraction of the image's half-size
MAX_GAMMA = 0.7  # log-gamma
MAX_CONTRAST = 0.6
MAX_BRIGHTNESS = 0.6  # in image standard deviations
MAX_NOISE = 0.3  # in image standard deviations
MAX_BLUR_SIGMA = 1.5
MAX_SHARPEN = 2.0
MAX_BIAS = 0.5
MAX_CUTOUT = 0.5  # side, as a fraction of the image


def register_op(name: str) -> Callable[[OpFn], OpFn]:
    """Register an operation under ``name`` (used by policies)."""

    def deco(fn: OpFn) -> OpFn:
        OPS[name] = fn
        return fn

    return deco


def op_names() -> list[str]:
    """Names of every registered operation."""
    return list(OPS)


def apply_op(
    name: str, x: torch.Tensor, magnitude: float, generator: torch.Generator
) -> torch.Tensor:
    """Apply the registered operation ``name`` with ``magnitude`` in [0, 1]."""
    if not 0.0 <= magnitude <= 1.0:
        raise ValueError(f"{name}: magnitude must be in [0, 1], got {magnitude}")
    return OPS[name](x, magnitude, generator)


def _signs(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g).float() * 2 - 1


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _identity_theta(n: int) -> torch.Tensor:
    return torch.eye(2, 3).repeat(n, 1, 1)


@register_op("rotate")
def rotate(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    a = _signs(x.shape[0], g) * math.radians(MAX_ROTATE_DEG * m)
    theta = _identity_theta(x.shape[0])
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
    return _affine(x, theta)


@register_op("scale")
def scale(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    s = 1.0 + _signs(x.shape[0], g) * MAX_SCALE * m
    theta = _identity_theta(x.shape[0])
    theta[:, 0, 0], theta[:, 1, 1] = 1.0 / s, 1.0 / s
    return _affine(x, theta)


@register_op("shear")
def shear(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    theta = _identity_theta(x.shape[0])
    axis = torch.randint(0, 2, (x.shape[0],), generator=g)
    amount = _signs(x.shape[0], g) * MAX_SHEAR * m
    theta[:, 0, 1] = torch.where(axis == 0, amount, 0.0)
    theta[:, 1, 0] = torch.where(axis == 1, amount, 0.0)
    return _affine(x, theta)


@register_op("translate")
def translate(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    theta = _identity_theta(x.shape[0])
    theta[:, 0, 2] = _signs(x.shape[0], g) * 2 * MAX_TRANSLATE * m
    theta[:, 1, 2] = _signs(x.shape[0], g) * 2 * MAX_TRANSLATE * m
    return _affine(x, theta)


@register_op("elastic")
def elastic(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    b, _, h, w = x.shape
    coarse = torch.randn(b, 2, 4, 4, generator=g) * MAX_ELASTIC * m
    disp = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    base = F.affine_grid(_identity_theta(b), [b, 1, h, w], align_corners=False)
    grid = (base + disp.permute(0, 2, 3, 1)).to(device=x.device, dtype=x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@register_op("hflip")
def hflip(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    return x.flip(-1)


@register_op("vflip")
def vflip(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    return x.flip(-2)


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    flat = x.flatten(2)
    mean = flat.mean(-1)[..., None, None]
    std = flat.std(-1)[..., None, None].clamp(min=1e-6)
    lo = flat.amin(-1)[..., None, None]
    hi = flat.amax(-1)[..., None, None]
    return mean, std, lo, hi


@register_op("gamma")
def gamma(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    _, _, lo, hi = _stats(x)
    span = (hi - lo).clamp(min=1e-6)
    gam = torch.exp(_signs(x.shape[0], g) * MAX_GAMMA * m).to(x)[:, None, None, None]
    return ((x - lo) / span).clamp(0, 1).pow(gam) * span + lo


@register_op("contrast")
def contrast(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    mean, _, _, _ = _stats(x)
    f = (1.0 + _signs(x.shape[0], g) * MAX_CONTRAST * m).to(x)[:, None, None, None]
    return (x - mean) * f + mean


@register_op("brightness")
def brightness(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    _, std, _, _ = _stats(x)
    shift = (_signs(x.shape[0], g) * MAX_BRIGHTNESS * m).to(x)[:, None, None, None]
    return x + shift * std


@register_op("noise")
def noise(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    _, std, _, _ = _stats(x)
    n = torch.randn(x.shape, generator=g).to(x)
    return x + n * std * MAX_NOISE * m


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    kx = k.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = k.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1)
    y = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kx, groups=c)
    return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), ky, groups=c)


@register_op("blur")
def blur(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    return _gaussian_blur(x, MAX_BLUR_SIGMA * m)


@register_op("sharpen")
def sharpen(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    return x + MAX_SHARPEN * m * (x - _gaussian_blur(x, 1.0))


@register_op("bias_field")
def bias_field(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    if m == 0:
        return x
    b, _, h, w = x.shape
    coarse = torch.randn(b, 1, 3, 3, generator=g) * MAX_BIAS * m
    field = torch.exp(F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False))
    _, _, lo, _ = _stats(x)
    return (x - lo) * field.to(x) + lo


@register_op("cutout")
def cutout(x: torch.Tensor, m: float, g: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * MAX_CUTOUT * m), int(w * MAX_CUTOUT * m)
    if ch == 0 or cw == 0:
        return x
    mean, _, _, _ = _stats(x)
    out = x.clone()
    ys = torch.randint(0, h - ch + 1, (b,), generator=g).tolist()
    xs = torch.randint(0, w - cw + 1, (b,), generator=g).tolist()
    for i, (y0, x0) in enumerate(zip(ys, xs)):
        out[i, :, y0 : y0 + ch, x0 : x0 + cw] = mean[i]
    return out
