"""nnU-Net's augmentation: deterministic per seed, each part a switch that does what it says,
labels moved with the image, and the loader's batches independent of the number of workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from decathlon.datalist import load_task
from decathlon.preprocess import run_preprocess
from decathlon.sampling import make_loader
from decathlon.synthetic import write_synthetic_task
from nasmed.errors import ConfigError
from nasmed.train.augment import AUGMENT_PARTS, AugmentConfig, Augmenter

SPATIAL = ("rotation", "scaling", "elastic", "mirror")
INTENSITY = tuple(p for p in AUGMENT_PARTS if p not in SPATIAL)


def _only(part: str, p: float = 1.0) -> AugmentConfig:
    return AugmentConfig(**{**dict.fromkeys(AUGMENT_PARTS, 0.0), part: p})


def _patch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 16, 16, 12, generator=gen) + 0.5
    label = torch.zeros(1, 16, 16, 12, dtype=torch.int16)
    label[0, 3:9, 4:12, 2:7] = 1
    label[0, 10:14, 2:6, 6:11] = 2
    return image, label


def test_same_seed_same_patch_other_seed_other_patch() -> None:
    aug = Augmenter(AugmentConfig())
    image, label = _patch()
    a = aug(image.clone(), label.clone(), 11)
    b = aug(image.clone(), label.clone(), 11)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    changed = sum(not torch.equal(aug(image.clone(), label, s)[0], image) for s in range(20))
    assert changed >= 15  # nearly every patch gets at least one part (P(none) ~ 0.01)


def test_pickled_augmenter_gives_the_same_patch() -> None:
    import pickle

    aug = Augmenter(AugmentConfig(elastic=0.5))
    again = pickle.loads(pickle.dumps(aug))
    image, label = _patch()
    for seed in range(4):
        a, b = aug(image, label, seed), again(image, label, seed)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("part", INTENSITY)
def test_each_intensity_part_changes_the_image_only(part: str) -> None:
    assert len(INTENSITY) == 7
    aug = Augmenter(_only(part))
    image, label = _patch()
    changed = 0
    for seed in range(4):
        out, lab = aug(image.clone(), label.clone(), seed)
        assert out.shape == image.shape and torch.equal(lab, label)
        changed += not torch.allclose(out, image)
    assert changed >= 3  # p = 1 (gamma/low-resolution factors near 1 can be a no-op)


def test_switched_off_part_and_master_switch_do_nothing() -> None:
    image, label = _patch()
    for config in (AugmentConfig.off(), _only("noise", 0.0)):
        out, lab = Augmenter(config)(image, label, 3)
        assert torch.equal(out, image) and torch.equal(lab, label)
    assert not AugmentConfig.off().active and AugmentConfig().active
    assert AugmentConfig().without("noise", "mirror").noise == 0.0


def test_mirror_flips_image_and_label_together() -> None:
    image, label = _patch()
    out, lab = Augmenter(_only("mirror"))(image, label, 0)  # p = 1: every axis
    assert torch.equal(out, image.flip(1, 2, 3)) and torch.equal(lab, label.flip(1, 2, 3))


@pytest.mark.parametrize("part", ["rotation", "scaling", "elastic"])
def test_spatial_parts_move_the_label_with_the_image(part: str) -> None:
    _, label = _patch()
    image = label.float().repeat(2, 1, 1, 1)  # an image that is its label
    out, lab = Augmenter(_only(part))(image, label, 5)
    assert lab.shape == label.shape and not torch.equal(out, image)
    assert set(lab.unique().tolist()) <= {0.0, 1.0, 2.0}  # nearest: still labels
    inside = lab > 0
    assert ((out[0] > 0.5) == inside[0]).float().mean() > 0.9  # the same geometry


def test_config_is_checked_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="gamma"):
        AugmentConfig(gamma=1.5)
    with pytest.raises(ConfigError, match="unknown augmentation part"):
        AugmentConfig().without("sharpen")
    with pytest.raises(ConfigError, match="scale range"):
        AugmentConfig(scale_range=(1.4, 0.7))
    config = AugmentConfig(elastic=0.3)
    assert AugmentConfig.from_json(config.to_json()) == config


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("aug")
    task = write_synthetic_task(root / "task", cases=2, shape=(24, 24, 16), test_cases=0)
    run_preprocess(task, root / "work", workers=1, folds=2, progress=False)
    return root / "work" / "cache", [c.name for c in load_task(task).training]


def test_augmented_loader_is_the_same_for_any_number_of_workers(
    cache: tuple[Path, list[str]],
) -> None:
    cache_dir, cases = cache

    def batches(workers: int, augment: bool) -> list[dict]:
        loader = make_loader(
            cache_dir,
            cases,
            (16, 16, 8),
            batch_size=2,
            workers=workers,
            samples_per_epoch=6,
            seed=4,
            transform=Augmenter(AugmentConfig()) if augment else None,
        )
        loader.dataset.set_epoch(1)  # type: ignore[attr-defined]
        return list(loader)

    plain, zero, one = batches(0, False), batches(0, True), batches(1, True)
    for b, c in zip(zero, one, strict=True):
        assert torch.equal(b["image"], c["image"]) and torch.equal(b["label"], c["label"])
        assert b["label"].dtype == torch.int64
    assert any(not torch.equal(a["image"], b["image"]) for a, b in zip(plain, zero))


@pytest.mark.parametrize("part", ["blur", "low_resolution"])
def test_blur_and_low_resolution_pick_each_channel_with_p_half(part: str) -> None:
    """nnU-Net's p_per_channel 0.5: over many patches with the part firing (p 1), each of two
    channels is changed about half the time, and independently of the other."""
    aug = Augmenter(_only(part))
    image, label = _patch()
    image = image + torch.rand(image.shape, generator=torch.Generator().manual_seed(1))
    counts = torch.zeros(2, 2)  # [channel 0 changed][channel 1 changed]
    for seed in range(200):
        out, _ = aug(image.clone(), label, seed)
        a, b = (int(not torch.allclose(out[k], image[k])) for k in (0, 1))
        counts[a, b] += 1
    p0, p1 = counts[1].sum() / 200, counts[:, 1].sum() / 200
    assert 0.38 < p0 < 0.62 and 0.38 < p1 < 0.62
    assert counts[1, 1] > 25 and counts[1, 0] > 25 and counts[0, 1] > 25  # independent


@pytest.mark.parametrize("part", ["brightness", "contrast", "gamma", "inverted_gamma"])
def test_per_channel_parts_draw_their_own_factor_per_channel(part: str) -> None:
    """synchronize_channels=False: two identical channels come out different."""
    aug = Augmenter(_only(part))
    image, label = _patch()
    image = image[:1].repeat(2, 1, 1, 1)
    differ = 0
    for seed in range(10):
        out, _ = aug(image.clone(), label, seed)
        assert not torch.allclose(out, image)
        differ += not torch.allclose(out[0], out[1])
    assert differ >= 9


def test_noise_std_is_at_most_nnunets_and_the_same_for_every_channel() -> None:
    aug = Augmenter(_only("noise"))
    image = torch.zeros(2, 32, 32, 32)
    label = torch.zeros(1, 32, 32, 32, dtype=torch.int16)
    for seed in range(20):
        out, _ = aug(image.clone(), label, seed)
        s0, s1 = float(out[0].std()), float(out[1].std())
        assert s0 <= 0.1 * 1.05 and s1 <= 0.1 * 1.05  # batchgeneratorsv2: std in (0, 0.1)
        assert s0 == pytest.approx(s1, rel=0.05, abs=1e-3)


def test_bg_contrast_is_below_one_half_the_time() -> None:
    import numpy as np

    from nasmed.train.augment import bg_contrast

    rng = np.random.RandomState(0)
    draws = np.array([bg_contrast(rng, 0.7, 1.5) for _ in range(4000)])
    assert draws.min() >= 0.7 and draws.max() <= 1.5
    assert 0.47 < np.mean(draws < 1) < 0.53  # a plain uniform over (0.7, 1.5) gives 0.375
    assert np.all(np.array([bg_contrast(rng, 1.2, 1.5) for _ in range(50)]) >= 1.2)
