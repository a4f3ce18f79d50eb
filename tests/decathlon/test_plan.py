"""Plan rules: median spacing, the anisotropy rule, normalisation choice, patch within budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decathlon.errors import DatasetError, DecathlonError
from decathlon.fingerprint import CaseFingerprint, Fingerprint, IntensityStats
from decathlon.plan import Plan, estimate_memory_mb, make_plan, target_spacing

STATS = IntensityStats(50.0, 20.0, 48.0, -100.0, 300.0, -1000.0, 1000.0)


def _fp(
    spacings: list[tuple[float, float, float]],
    shapes: list[tuple[int, int, int]],
    *,
    modalities: tuple[str, ...] = ("CT",),
    crop: float = 1.0,
) -> Fingerprint:
    cases = tuple(
        CaseFingerprint(
            name=f"c{i}",
            spacing=sp,
            shape=tuple(int(s / crop ** (1 / 3)) for s in sh),  # type: ignore[arg-type]
            shape_after_crop=sh,
            class_voxels={1: 100},
        )
        for i, (sp, sh) in enumerate(zip(spacings, shapes, strict=True))
    )
    return Fingerprint(
        task_name="T",
        modalities=modalities,
        labels={0: "background", 1: "organ"},
        cases=cases,
        intensity=(STATS,) * len(modalities),
    )


def test_target_spacing_is_median_when_isotropic_enough() -> None:
    spacings = np.array([[0.7, 0.7, 1.0], [0.8, 0.8, 2.0], [0.9, 0.9, 1.5]])
    shapes = np.array([[200, 200, 100]] * 3)
    spacing, axis = target_spacing(spacings, shapes)
    assert spacing == pytest.approx((0.8, 0.8, 1.5))
    assert axis is None


def test_anisotropy_rule_uses_10th_percentile() -> None:
    z = [4.0, 5.0, 5.0, 5.0, 6.0]
    spacings = np.array([[0.8, 0.8, s] for s in z])
    shapes = np.array([[256, 256, 30]] * 5)
    spacing, axis = target_spacing(spacings, shapes)
    assert axis == 2
    assert spacing[2] == pytest.approx(np.percentile(z, 10))
    assert spacing[:2] == pytest.approx((0.8, 0.8))


def test_anisotropic_spacing_with_many_slices_keeps_median() -> None:
    spacings = np.array([[0.8, 0.8, s] for s in (4.0, 5.0, 6.0)])
    shapes = np.array([[100, 100, 200]] * 3)  # the coarse axis is not short: no rule
    spacing, axis = target_spacing(spacings, shapes)
    assert axis is None and spacing[2] == pytest.approx(5.0)


def test_lowered_spacing_never_finer_than_in_plane() -> None:
    spacings = np.array([[1.0, 1.0, 5.0]] * 4 + [[1.0, 1.0, 0.5]])
    shapes = np.array([[300, 300, 20]] * 5)
    spacing, axis = target_spacing(spacings, shapes)
    assert axis == 2 and spacing[2] >= 1.0


def test_normalisation_per_modality() -> None:
    plan = make_plan(_fp([(1.0, 1.0, 1.0)] * 3, [(64, 64, 64)] * 3))
    (ct,) = plan.normalization
    assert ct.scheme == "ct"
    assert (ct.clip_low, ct.clip_high, ct.mean, ct.std) == (-100.0, 300.0, 50.0, 20.0)
    mr = make_plan(_fp([(1.0, 1.0, 1.0)] * 3, [(64, 64, 64)] * 3, modalities=("T2", "ADC")))
    assert [n.scheme for n in mr.normalization] == ["zscore", "zscore"]
    assert not any(n.use_nonzero_mask for n in mr.normalization)
    cropped = _fp([(1.0, 1.0, 1.0)] * 3, [(64, 64, 64)] * 3, modalities=("FLAIR",), crop=0.5)
    assert make_plan(cropped).normalization[0].use_nonzero_mask


@pytest.mark.parametrize("divisor", [8, 16, 32])
@pytest.mark.parametrize("budget", [500.0, 2000.0, 8192.0])
def test_patch_fits_budget_and_divisor(divisor: int, budget: float) -> None:
    fp = _fp([(1.0, 1.0, 1.0)] * 3, [(300, 260, 180)] * 3)
    plan = make_plan(fp, memory_budget_mb=budget, divisor=divisor)
    assert all(p % divisor == 0 for p in plan.patch_size)
    assert all(p <= m for p, m in zip(plan.patch_size, (300, 260, 180), strict=True))
    cost = estimate_memory_mb(
        plan.patch_size, batch_size=plan.batch_size, in_channels=1, num_classes=2, divisor=divisor
    )
    assert cost <= budget
    assert plan.estimated_memory_mb == pytest.approx(cost, abs=0.1)
    assert plan.batch_size >= 2


def test_patch_capped_by_median_shape() -> None:
    plan = make_plan(_fp([(1.0, 1.0, 1.0)] * 3, [(40, 72, 100)] * 3))
    assert plan.patch_size == (32, 64, 96)
    assert plan.median_shape_after_resampling == (40, 72, 100)


def test_given_patch_is_checked() -> None:
    fp = _fp([(1.0, 1.0, 1.0)] * 3, [(64, 64, 64)] * 3)
    assert make_plan(fp, patch_size=(32, 48, 16)).patch_size == (32, 48, 16)
    with pytest.raises(DecathlonError, match="multiples of 16"):
        make_plan(fp, patch_size=(30, 32, 32))


def test_plan_json_round_trip(tmp_path: Path) -> None:
    plan = make_plan(_fp([(0.8, 0.8, 5.0)] * 3, [(256, 256, 30)] * 3))
    assert plan.notes  # the anisotropy rule is recorded
    loaded = Plan.load(plan.save(tmp_path / "plan.json"))
    assert loaded == plan
    assert loaded.preprocessing_hash() == plan.preprocessing_hash()
    other = make_plan(_fp([(0.8, 0.8, 5.0)] * 3, [(256, 256, 30)] * 3), patch_size=(32, 32, 16))
    assert other.preprocessing_hash() == plan.preprocessing_hash()  # patch does not matter


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"version": 1}', "not a valid plan"),
        ('{"version": 99}', "not a valid plan"),
    ],
)
def test_plan_load_rejects_bad_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=match):
        Plan.load(path)
    with pytest.raises(DatasetError, match="not found"):
        Plan.load(tmp_path / "missing.json")
