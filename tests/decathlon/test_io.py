"""decathlon.io: geometry round trips through every format and both backends, and read errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from decathlon.errors import ImageReadError
from decathlon.io import Geometry, read_geometry, read_image, strip_suffix, write_image

SHAPE = (7, 6, 5)


def _rotation(deg_x: float, deg_z: float) -> np.ndarray:
    ax, az = np.deg2rad(deg_x), np.deg2rad(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ rx


def _affine(kind: str) -> np.ndarray:
    a = np.eye(4)
    if kind == "ras":
        a[:3, :3] = np.eye(3)
    elif kind == "lps":
        a[:3, :3] = np.diag([-1.0, -1.0, 1.0])
    elif kind == "anisotropic":
        a[:3, :3] = np.diag([0.7, 0.9, 3.5])
    elif kind == "oblique":
        a[:3, :3] = _rotation(12.0, 25.0) @ np.diag([-0.8, 0.8, 2.5])
    a[:3, 3] = [-20.5, 13.25, 7.0]
    return a


GEOMETRIES = ["ras", "lps", "anisotropic", "oblique"]
SUFFIXES = [".nii.gz", ".nii", ".mha", ".nrrd"]


@pytest.mark.parametrize("kind", GEOMETRIES)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_keeps_array_and_geometry(tmp_path: Path, kind: str, suffix: str) -> None:
    geometry = Geometry(_affine(kind), SHAPE)
    array = np.random.default_rng(0).normal(size=(1, *SHAPE)).astype(np.float32)
    path = write_image(tmp_path / f"img{suffix}", array, geometry)
    back = read_image(path)
    np.testing.assert_array_equal(back.array, array)
    assert back.geometry.shape == SHAPE
    np.testing.assert_allclose(back.geometry.affine, geometry.affine, atol=1e-5)
    header, channels = read_geometry(path)
    assert channels == 1
    np.testing.assert_allclose(header.affine, geometry.affine, atol=1e-5)


@pytest.mark.parametrize("kind", GEOMETRIES)
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nibabel_and_sitk_agree_on_nifti(tmp_path: Path, kind: str, suffix: str) -> None:
    geometry = Geometry(_affine(kind), SHAPE)
    array = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    path = write_image(tmp_path / f"img{suffix}", array, geometry)
    a = read_image(path, backend="nibabel")
    b = read_image(path, backend="sitk")
    np.testing.assert_allclose(a.geometry.affine, b.geometry.affine, atol=1e-5)
    np.testing.assert_array_equal(a.array, b.array)
    # ITK's own view of the file: spacing, origin and direction derived from the affine
    itk = sitk.ReadImage(str(path))
    np.testing.assert_allclose(itk.GetSpacing(), geometry.spacing, atol=1e-5)
    np.testing.assert_allclose(itk.GetOrigin(), geometry.origin, atol=1e-5)
    np.testing.assert_allclose(
        np.reshape(itk.GetDirection(), (3, 3)), geometry.direction, atol=1e-5
    )


def test_geometry_properties() -> None:
    lps = Geometry(_affine("lps"), SHAPE)
    assert lps.orientation == "LPS"
    np.testing.assert_allclose(lps.direction, np.eye(3))  # LPS is ITK's identity
    assert not lps.is_oblique
    assert Geometry(_affine("ras"), SHAPE).orientation == "RAS"
    oblique = Geometry(_affine("oblique"), SHAPE)
    assert oblique.is_oblique
    np.testing.assert_allclose(oblique.spacing, (0.8, 0.8, 2.5))
    again = Geometry.from_itk(oblique.spacing, oblique.origin, oblique.direction.ravel(), SHAPE)
    np.testing.assert_allclose(again.affine, oblique.affine, atol=1e-9)
    assert Geometry.from_json(oblique.to_json()).allclose(oblique, atol=1e-12)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_four_d_images_become_channels(tmp_path: Path, suffix: str) -> None:
    geometry = Geometry(_affine("oblique"), SHAPE)
    array = np.random.default_rng(1).normal(size=(3, *SHAPE)).astype(np.float32)
    path = write_image(tmp_path / f"img{suffix}", array, geometry)
    back = read_image(path)
    assert back.channels == 3
    np.testing.assert_array_equal(back.array, array)
    assert read_geometry(path)[1] == 3


def test_nifti_4d_on_disk_is_channels_last(tmp_path: Path) -> None:
    geometry = Geometry(_affine("ras"), SHAPE)
    array = np.stack([np.full(SHAPE, c, np.float32) for c in range(2)])
    path = write_image(tmp_path / "img.nii.gz", array, geometry)
    on_disk = nib.load(str(path))
    assert on_disk.shape == (*SHAPE, 2)


def test_nifti_gz_is_deterministic(tmp_path: Path) -> None:
    geometry = Geometry(_affine("oblique"), SHAPE)
    array = np.ones(SHAPE, np.int16)
    a = write_image(tmp_path / "a.nii.gz", array, geometry).read_bytes()
    b = write_image(tmp_path / "b.nii.gz", array, geometry).read_bytes()
    assert a == b


def test_strip_suffix() -> None:
    assert strip_suffix("la_003.nii.gz") == "la_003"
    assert strip_suffix("/x/y/case.MHA") == "case"
    assert strip_suffix("notes.txt") == "notes.txt"


def _assert_names_file(exc: pytest.ExceptionInfo[ImageReadError], path: Path, words: str) -> None:
    message = str(exc.value)
    assert str(path) in message and words in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(ImageReadError) as exc:
        read_image(path)
    _assert_names_file(exc, path, "not found")
    with pytest.raises(ImageReadError):
        read_geometry(tmp_path / "nope.mha")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(ImageReadError) as exc:
        read_image(path)
    _assert_names_file(exc, path, "unsupported file extension")
    with pytest.raises(ImageReadError):
        write_image(path, np.zeros(SHAPE), Geometry(np.eye(4), SHAPE))


def test_truncated_gzip(tmp_path: Path) -> None:
    path = write_image(tmp_path / "img.nii.gz", np.ones(SHAPE), Geometry(np.eye(4), SHAPE))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageReadError) as exc:
        read_image(path)
    _assert_names_file(exc, path, "truncated")


def test_garbage_file(tmp_path: Path) -> None:
    for name in ("img.nii.gz", "img.mha"):
        path = tmp_path / name
        path.write_bytes(b"garbage" * 50)
        with pytest.raises(ImageReadError) as exc:
            read_image(path)
        _assert_names_file(exc, path, "cannot read")


def test_two_d_and_zero_size(tmp_path: Path) -> None:
    flat = tmp_path / "flat.nii.gz"
    flat.write_bytes(gzip.compress(nib.Nifti1Image(np.zeros((4, 5), np.float32), None).to_bytes()))
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(
        gzip.compress(nib.Nifti1Image(np.zeros((4, 0, 3), np.float32), None).to_bytes())
    )
    for reader in (read_image, read_geometry):
        with pytest.raises(ImageReadError) as exc:
            reader(flat)
        _assert_names_file(exc, flat, "2D")
        with pytest.raises(ImageReadError) as exc:
            reader(empty)
        _assert_names_file(exc, empty, "zero-size dimension")


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_image(tmp_path / "img.nii.gz", np.zeros((3, 3, 3)), Geometry(np.eye(4), SHAPE))
    assert list(tmp_path.iterdir()) == []
