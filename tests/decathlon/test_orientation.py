"""Canonical orientation: reordering keeps every voxel's world position, undo is exact, and the
preprocessed arrays of a case do not depend on how its voxels are stored."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from decathlon.caseprep import preprocess_case, restore_to_original
from decathlon.errors import DatasetError
from decathlon.io import Geometry, Image
from decathlon.orientation import Reorientation, reorientation_of
from decathlon.plan import ChannelNorm, Plan
from decathlon.testing import store_reordered


def _plan() -> Plan:
    return Plan(
        task_name="t",
        modalities=("MR",),
        labels={0: "background", 1: "a"},
        target_spacing=(1.0, 1.2, 2.0),
        normalization=(ChannelNorm("zscore"),),
        patch_size=(16, 16, 16),
        batch_size=2,
        median_shape_after_resampling=(16, 16, 16),
    )


VARIANTS = [
    ((), (0, 1, 2)),
    ((0,), (0, 1, 2)),
    ((1, 2), (0, 1, 2)),
    ((), (2, 0, 1)),
    ((0,), (1, 2, 0)),
]


@pytest.fixture()
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    array = rng.normal(size=(1, 20, 18, 12)).astype(np.float32)
    array[:, :3] = 0  # a crop box that is not symmetric
    label = (array > 0.8).astype(np.int8)
    affine = np.diag([-0.9, -1.1, 2.2, 1.0])  # LPS
    affine[:3, 3] = (10.0, -20.0, 5.0)
    return array, label, affine


@pytest.mark.parametrize(("flips", "perm"), VARIANTS)
def test_reordering_keeps_world_positions_and_undo_is_exact(case, flips, perm) -> None:
    array, _, affine = case
    stored, aff = store_reordered(array, affine, flips, perm)
    geom = Geometry(aff, stored.shape[1:])
    r = Reorientation.of(geom)
    canon = r.apply(stored)
    cgeom = r.geometry(geom)
    assert cgeom.orientation == "RAS" and canon.shape[1:] == cgeom.shape
    # every voxel keeps its world position: compare a few voxels through the affines
    for ijk in [(0, 0, 0), (3, 5, 7), tuple(s - 1 for s in stored.shape[1:])]:
        world = aff @ (*ijk, 1)
        cijk = np.rint(np.linalg.solve(cgeom.affine, world)[:3]).astype(int)
        assert stored[(0, *ijk)] == canon[(0, *cijk)]
    assert np.array_equal(r.undo(canon), stored)
    assert Reorientation.from_json(r.to_json()) == r


@pytest.mark.parametrize(("flips", "perm"), VARIANTS[1:])
def test_preprocessing_does_not_depend_on_the_voxel_order(case, flips, perm) -> None:
    array, label, affine = case
    plan = _plan()
    g0 = Geometry(affine, array.shape[1:])
    ref = preprocess_case(Image(array, g0), Image(label, g0), plan)
    stored, aff = store_reordered(array, affine, flips, perm)
    lab, _ = store_reordered(label, affine, flips, perm)
    geom = Geometry(aff, stored.shape[1:])
    pre = preprocess_case(Image(stored, geom), Image(lab, geom), plan)
    assert np.allclose(pre.array, ref.array, atol=1e-5)
    assert pre.properties.crop_box == ref.properties.crop_box
    assert pre.properties.orientation.source == "".join(nib.aff2axcodes(aff))
    assert pre.seg is not None and ref.seg is not None and np.array_equal(pre.seg, ref.seg)
    back = restore_to_original(pre.seg, pre.properties, is_label=True)  # the stored voxel order
    back_ref = restore_to_original(ref.seg, ref.properties, is_label=True)
    assert back.shape == lab.shape
    assert np.array_equal(back, store_reordered(back_ref, affine, flips, perm)[0])
    assert not np.array_equal(back, back_ref) or back.shape != back_ref.shape


def test_singular_affine_is_refused_naming_the_file() -> None:
    affine = np.diag([1.0, 1.0, 0.0, 1.0])
    image = Image(np.zeros((1, 4, 4, 4), np.float32), Geometry(affine, (4, 4, 4)))
    with pytest.raises(DatasetError, match=r"x\.nii\.gz: singular affine"):
        reorientation_of(image.geometry, "x.nii.gz")


def test_plan_records_the_orientation_and_refuses_old_plans() -> None:
    plan = _plan()
    assert plan.to_json()["orientation"] == "RAS"
    old = dict(plan.to_json(), version=1)
    old.pop("orientation")
    with pytest.raises(ValueError, match="run `nasmed preprocess` again"):
        Plan.from_json(old)
