"""2D slice classification as pictures: SAOL attention over slices, the ALC learning curve, and
a gallery of an augmentation policy applied to one slice.

The SAOL head's attention map (softmax over the locations of its intermediate feature map) is
upsampled to the slice and drawn over it. The ALC curve is AutoDL's step curve of ``2 * AUC - 1``
over log-scaled time (:mod:`nasmed.classify.alc`), its area shaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from decathlon.slices import SliceSet
from nasmed.classify.alc import alc, transform_time
from nasmed.classify.autoaugment.policy import Policy
from nasmed.classify.outputs import RunFigures
from nasmed.classify.saol import Classifier
from nasmed.errors import ConfigError
from nasmed.viz.figure import hide_ticks, new_figure, save_png

__all__ = [
    "plot_alc",
    "plot_attention",
    "plot_policy_gallery",
    "upsample_attention",
    "write_attention_maps",
    "write_run_figures",
]


def plot_alc(
    times: Sequence[float],
    scores: Sequence[float],
    budget: float,
    *,
    value: float | None = None,
    title: str | None = None,
) -> Figure:
    """The anytime learning curve: score of the latest prediction over log-scaled time.

    Args:
        times: seconds (from the start) of each test prediction.
        scores: the ``2 * AUC - 1`` score of each prediction.
        budget: the time budget ``T`` in seconds.
        value: the ALC to print in the title; default computed (:func:`~nasmed.classify.alc.alc`).
        title: a prefix for the title.

    Returns:
        A figure with one axes: the step curve, the area under it shaded, a dot per prediction.
    """
    if len(times) != len(scores):
        raise ConfigError(f"{len(times)} prediction times but {len(scores)} scores")
    if budget <= 0:
        raise ConfigError(f"the time budget must be > 0 seconds, got {budget}")
    points = sorted((float(t), float(s)) for t, s in zip(times, scores) if t <= budget)
    xs = [0.0] + [transform_time(t, budget) for t, _ in points] + [1.0]
    ys = [0.0] + [s for _, s in points]
    ys.append(ys[-1])
    area = alc(times, scores, budget) if value is None else value
    fig, axes = new_figure(1, 1, size=(5.0, 3.5))
    ax = axes[0, 0]
    ax.step(xs, ys, where="post", color="C0")
    ax.fill_between(xs, ys, step="post", alpha=0.25, color="C0")
    ax.scatter(xs[1:-1], ys[1:-1], color="C0", s=14, zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(min(0.0, *ys) - 0.05, 1.0)
    ax.set_xlabel(f"log-scaled time  log(1+t/60) / log(1+{budget:g}/60)", fontsize=8)
    ax.set_ylabel("2 * AUC - 1", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(f"{title + ': ' if title else ''}ALC = {area:.4f}", fontsize=9)
    return fig


def upsample_attention(attention: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An ``(h, w)`` attention map resized (bilinear) to ``size`` and scaled to max 1."""
    t = torch.as_tensor(np.asarray(attention, dtype=np.float32))[None, None]
    up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    peak = float(up.max())
    return up / peak if peak > 0 else up


def plot_attention(
    images: np.ndarray,
    attention: np.ndarray,
    *,
    titles: Sequence[str] | None = None,
    masks: np.ndarray | None = None,
    ncols: int = 4,
    alpha: float = 0.7,
) -> Figure:
    """SAOL attention maps over their slices.

    Args:
        images: ``(N, C, H, W)`` or ``(N, H, W)`` slices (the first channel is shown).
        attention: ``(N, h, w)`` attention maps (``HeadOutput.attention``).
        titles: one per slice (e.g. the target and the predicted probability).
        masks: optional ``(N, H, W)`` label masks, outlined in white.
        ncols: slices per row.
        alpha: opacity of the attention overlay where the attention peaks; it fades to
            transparent at the map's minimum (a uniform map draws nothing).

    Returns:
        A figure with one axes per slice.
    """
    imgs = np.asarray(images, dtype=np.float32)
    if imgs.ndim == 4:
        imgs = imgs[:, 0]
    att = np.asarray(attention, dtype=np.float32)
    if imgs.ndim != 3 or att.ndim != 3 or len(imgs) != len(att) or not len(imgs):
        raise ConfigError(
            f"need N slices and N attention maps, got shapes {np.shape(images)} and "
            f"{np.shape(attention)}"
        )
    n = len(imgs)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = new_figure(nrows, ncols, size=(2.4 * ncols, 2.5 * nrows))
    flat = list(axes.ravel())
    for i, ax in enumerate(flat[:n]):
        h, w = imgs[i].shape
        ax.imshow(imgs[i].T, cmap="gray", origin="lower")
        up = upsample_attention(att[i], (h, w)).T
        # colour and opacity follow the attention from its lowest to its highest value, so the
        # slice stays visible where the network did not look, and a uniform map shows nothing
        spread = float(up.max() - up.min())
        rel = (up - up.min()) / spread if spread > 1e-3 else np.zeros_like(up)
        ax.imshow(rel, cmap="jet", alpha=alpha * rel, vmin=0, vmax=1, origin="lower")
        if masks is not None and np.any(masks[i] > 0):
            ax.contour((masks[i] > 0).T.astype(float), levels=[0.5], colors="white", linewidths=0.8)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
        hide_ticks(ax)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig


def plot_policy_gallery(
    policy: Policy,
    image: np.ndarray,
    *,
    samples: int = 4,
    seed: int = 0,
    max_sub_policies: int = 6,
) -> Figure:
    """An augmentation policy applied to one slice: a row per sub-policy, ``samples`` draws each.

    Args:
        policy: the policy (its sub-policies are applied one at a time, so each row shows
            what one sub-policy does; each step still fires with its probability).
        image: the slice, ``(C, H, W)`` or ``(H, W)`` (the first channel is shown).
        samples: draws per sub-policy.
        seed: seeds the draws.
        max_sub_policies: show at most this many (the first) sub-policies.

    Returns:
        A figure with ``rows x (1 + samples)`` axes: the original slice, then the draws.
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ConfigError(f"expected a (C, H, W) or (H, W) slice, got shape {np.shape(image)}")
    subs = policy.sub_policies[:max_sub_policies]
    if not subs:
        raise ConfigError("the policy is empty: nothing to show")
    generator = torch.Generator().manual_seed(seed)
    batch = torch.as_tensor(x)[None].repeat(samples, 1, 1, 1)
    fig, axes = new_figure(len(subs), samples + 1, size=(1.7 * (samples + 1), 1.9 * len(subs)))
    low, high = float(np.percentile(x[0], 1)), float(np.percentile(x[0], 99))
    for r, sub in enumerate(subs):
        out = sub.apply(batch, generator).numpy()
        row = axes[r]
        row[0].imshow(x[0].T, cmap="gray", origin="lower", vmin=low, vmax=high)
        row[0].set_title("original", fontsize=7)
        row[0].set_ylabel(
            "\n".join(f"{s.op} p{s.prob:.2f} m{s.magnitude:.2f}" for s in sub.steps), fontsize=6
        )
        for k in range(samples):
            row[k + 1].imshow(out[k, 0].T, cmap="gray", origin="lower", vmin=low, vmax=high)
            row[k + 1].set_title(f"draw {k + 1}", fontsize=7)
        for ax in row:
            hide_ticks(ax)
    return fig


def write_run_figures(run: RunFigures) -> int:
    """Draw a classify run's ``alc.png`` and ``attention/*.png``; returns the attention maps
    drawn (the ``figures`` argument of :func:`nasmed.classify.api.classify`)."""
    fig = plot_alc(run.times, run.scores, run.time_budget, value=run.alc)
    save_png(fig, run.out_dir / "alc.png")
    return write_attention_maps(
        run.model, run.test, run.attention_maps, run.device, run.out_dir / "attention", run.probs
    )


def write_attention_maps(
    model: Classifier, test: SliceSet, n: int, device: torch.device, folder: Path, probs: np.ndarray
) -> int:
    """Attention PNGs of up to ``n`` test slices showing a class (SAOL only); returns the count."""
    folder.mkdir(parents=True, exist_ok=True)
    if model.head_name != "saol" or n <= 0 or len(test) == 0:
        return 0
    fg = np.flatnonzero(test.targets.any(axis=1))
    pool = fg if len(fg) else np.arange(len(test))
    pick = pool[np.linspace(0, len(pool) - 1, min(n, len(pool))).astype(int)]
    model.eval()
    with torch.no_grad():
        att = model(torch.from_numpy(test.images[pick]).to(device)).attention
    assert att is not None
    cases = test.slice_cases
    names = [f"{cases[i]}_slice{int(test.slice_index[i]):03d}" for i in pick]
    titles = [
        ", ".join(
            f"{c} {p:.2f}/{t}" for c, p, t in zip(test.class_names, probs[i], test.targets[i])
        )
        for i in pick
    ]
    maps = att.cpu().numpy()
    masks = None if test.masks is None else test.masks[pick]
    for j, (name, title) in enumerate(zip(names, titles)):
        fig = plot_attention(
            test.images[pick[j] : pick[j] + 1],
            maps[j : j + 1],
            titles=[title],
            masks=None if masks is None else masks[j : j + 1],
        )
        save_png(fig, folder / f"{name}.png", dpi=80)
    return len(pick)
