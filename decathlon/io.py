"""Read and write medical images with their full geometry.

Arrays are always channel-first, ``(C, X, Y, Z)``: voxel ``[c, i, j, k]`` sits at world position
``affine @ (i, j, k, 1)``. The :class:`Geometry` keeps the affine in nibabel's convention (voxel to
RAS+ millimetres) and derives ITK's spacing, origin and direction (LPS) from it, so images read
with nibabel and with SimpleITK describe the same grid.

NIfTI (``.nii``, ``.nii.gz``) is read with nibabel by default; MetaImage (``.mha``, ``.mhd``) and
NRRD (``.nrrd``, ``.nhdr``) with SimpleITK, which can also read NIfTI (``backend="sitk"``). A 4D
NIfTI (multi-modal MSD tasks) becomes the channel axis.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from decathlon.errors import ImageReadError
from decathlon.fsutil import atomic_open, make_temp_dir

__all__ = [
    "NIFTI_SUFFIXES",
    "SITK_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "Geometry",
    "Image",
    "image_suffix",
    "read_geometry",
    "read_image",
    "strip_suffix",
    "write_image",
]

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
SITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
SUPPORTED_SUFFIXES = NIFTI_SUFFIXES + SITK_SUFFIXES

# RAS <-> LPS flips the first two world axes.
_LPS = np.diag([-1.0, -1.0, 1.0])

Backend = Literal["auto", "nibabel", "sitk"]


def image_suffix(path: str | os.PathLike[str]) -> str:
    """The image suffix of ``path`` (``".nii.gz"``, ``".mha"``, ...), lower case, or ``""``."""
    name = Path(path).name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def strip_suffix(path: str | os.PathLike[str]) -> str:
    """The file name of ``path`` without its image suffix (``"la_003.nii.gz"`` -> ``"la_003"``)."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


@dataclass(frozen=True)
class Geometry:
    """Where a voxel grid lies in the world.

    Args:
        affine: 4x4 voxel-to-world matrix, world in RAS+ millimetres (nibabel's convention).
        shape: spatial shape ``(X, Y, Z)``.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        if len(self.shape) != 3:
            raise ValueError(f"shape must be (X, Y, Z), got {self.shape}")
        affine.setflags(write=False)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along X, Y, Z in millimetres."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def direction(self) -> np.ndarray:
        """ITK direction cosines (3x3, LPS world, columns are the voxel axes)."""
        return np.asarray(_LPS @ self.affine[:3, :3] / np.asarray(self.spacing)[None, :])

    @property
    def origin(self) -> tuple[float, float, float]:
        """ITK origin: world position (LPS) of voxel (0, 0, 0)."""
        o = _LPS @ self.affine[:3, 3]
        return (float(o[0]), float(o[1]), float(o[2]))

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"`` or ``"LPS"`` (nibabel's ``aff2axcodes``)."""
        return "".join(nib.aff2axcodes(self.affine))

    @property
    def is_oblique(self) -> bool:
        """True when the voxel axes are not aligned with the world axes."""
        d = np.abs(self.direction)
        return bool(np.any((d > 1e-6) & (d < 1 - 1e-6)))

    @classmethod
    def from_itk(
        cls,
        spacing: tuple[float, ...],
        origin: tuple[float, ...],
        direction: tuple[float, ...] | np.ndarray,
        shape: tuple[int, int, int],
    ) -> Geometry:
        """Build from ITK's spacing, origin and direction (LPS, first three axes used)."""
        n = math.isqrt(np.asarray(direction).size)
        d = np.asarray(direction, dtype=np.float64).reshape(n, n)[:3, :3]
        affine = np.eye(4)
        affine[:3, :3] = _LPS @ d @ np.diag(np.asarray(spacing[:3], dtype=np.float64))
        affine[:3, 3] = _LPS @ np.asarray(origin[:3], dtype=np.float64)
        return cls(affine, shape)

    def allclose(self, other: Geometry, *, atol: float = 1e-3, rtol: float = 1e-4) -> bool:
        """Same shape and affines equal within the tolerances (millimetres)."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, atol=atol, rtol=rtol)
        )

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (lists of floats)."""
        return {"affine": self.affine.tolist(), "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Geometry:
        """Inverse of :meth:`to_json`."""
        shape = tuple(int(s) for s in data["shape"])
        return cls(np.asarray(data["affine"], dtype=np.float64), (shape[0], shape[1], shape[2]))


@dataclass(frozen=True)
class Image:
    """A channel-first image ``(C, X, Y, Z)`` and its geometry."""

    array: np.ndarray
    geometry: Geometry
    path: Path | None = field(default=None, compare=False)

    @property
    def channels(self) -> int:
        """Number of channels (modalities)."""
        return int(self.array.shape[0])


def _check_suffix(path: Path) -> str:
    suffix = image_suffix(path)
    if not suffix:
        raise ImageReadError(
            f"{path}: unsupported file extension; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return suffix


def _choose_backend(suffix: str, backend: Backend) -> Literal["nibabel", "sitk"]:
    if backend == "auto":
        return "nibabel" if suffix in NIFTI_SUFFIXES else "sitk"
    if backend == "nibabel" and suffix not in NIFTI_SUFFIXES:
        raise ImageReadError(f"nibabel backend reads NIfTI only, not {suffix}")
    return backend


def _to_channel_first(data: np.ndarray, path: Path) -> np.ndarray:
    """(X, Y, Z) or (X, Y, Z, C) [or (X, Y, Z, 1, C)] -> (C, X, Y, Z)."""
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]
    if data.ndim == 3:
        out = data[None]
    elif data.ndim == 4:
        out = np.moveaxis(data, 3, 0)
    else:
        raise ImageReadError(
            f"{path}: image has {data.ndim} dimensions {tuple(data.shape)}; "
            "expected 3D (X, Y, Z) or 4D (X, Y, Z, C)"
        )
    if 0 in out.shape:
        raise ImageReadError(f"{path}: image has a zero-size dimension {tuple(data.shape)}")
    return out


def _spatial3(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    if len(shape) < 3:
        raise ImageReadError(
            f"{path}: image is {len(shape)}D {tuple(shape)}; expected 3D (X, Y, Z) or 4D"
        )
    _check_nonzero(shape, path)
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _check_nonzero(shape: tuple[int, ...], path: Path) -> None:
    if 0 in tuple(shape):
        raise ImageReadError(f"{path}: image has a zero-size dimension {tuple(shape)}")


def _load_nibabel(path: Path) -> Any:
    try:
        return nib.load(str(path))
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: file not found") from exc
    except Exception as exc:
        raise ImageReadError(f"{path}: cannot read NIfTI header ({exc})") from exc


def _read_sitk(path: Path) -> sitk.Image:
    if not path.exists():
        raise ImageReadError(f"{path}: file not found")
    try:
        return sitk.ReadImage(str(path))
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        detail = msg[-1] if msg else type(exc).__name__
        raise ImageReadError(f"{path}: cannot read image ({detail})") from exc


def _sitk_geometry(img: sitk.Image, path: Path) -> Geometry:
    size = img.GetSize()
    return Geometry.from_itk(
        img.GetSpacing(), img.GetOrigin(), img.GetDirection(), _spatial3(size, path)
    )


def read_geometry(path: str | os.PathLike[str], backend: Backend = "auto") -> tuple[Geometry, int]:
    """Read only the header: the geometry and the channel count, without the voxel data.

    Raises:
        ImageReadError: missing, unsupported or unreadable file.
    """
    p = Path(path)
    kind = _choose_backend(_check_suffix(p), backend)
    if kind == "nibabel":
        img = _load_nibabel(p)
        shape = tuple(int(s) for s in img.shape)
        spatial = _spatial3(shape, p)
        channels = int(np.prod(shape[3:])) if len(shape) > 3 else 1
        return Geometry(np.asarray(img.affine, dtype=np.float64), spatial), channels
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    if not p.exists():
        raise ImageReadError(f"{p}: file not found")
    try:
        reader.ReadImageInformation()
    except Exception as exc:
        raise ImageReadError(f"{p}: cannot read image header ({exc})") from exc
    size = reader.GetSize()
    geom = Geometry.from_itk(
        reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection(), _spatial3(size, p)
    )
    channels = int(reader.GetNumberOfComponents()) * (
        int(np.prod(size[3:])) if len(size) > 3 else 1
    )
    return geom, channels


def read_image(path: str | os.PathLike[str], backend: Backend = "auto", dtype: Any = None) -> Image:
    """Read an image as ``(C, X, Y, Z)`` with its geometry.

    Args:
        path: a NIfTI, MetaImage or NRRD file.
        backend: ``"auto"`` (nibabel for NIfTI, SimpleITK otherwise), ``"nibabel"`` or ``"sitk"``.
        dtype: cast the voxels to this dtype (default: the file's own, scaling applied).

    Raises:
        ImageReadError: missing, unsupported, truncated or malformed file, or not 3D/4D.
    """
    p = Path(path)
    kind = _choose_backend(_check_suffix(p), backend)
    if kind == "nibabel":
        img = _load_nibabel(p)
        _spatial3(tuple(int(n) for n in img.shape), p)
        try:
            data = np.asanyarray(img.dataobj)
        except Exception as exc:
            raise ImageReadError(
                f"{p}: cannot read voxel data, file truncated or corrupt ({exc})"
            ) from exc
        array = _to_channel_first(np.asarray(data), p)
        geometry = Geometry(np.asarray(img.affine, dtype=np.float64), _spatial3(array.shape[1:], p))
    else:
        simg = _read_sitk(p)
        arr = sitk.GetArrayFromImage(simg)
        dim = simg.GetDimension()
        if simg.GetNumberOfComponentsPerPixel() > 1:  # (z, y, x, c) vector image
            array = np.transpose(arr, (3, 2, 1, 0))
        elif dim == 4:  # (t, z, y, x)
            array = np.transpose(arr, (0, 3, 2, 1))
        elif dim == 3:
            array = np.transpose(arr, (2, 1, 0))[None]
        else:
            raise ImageReadError(
                f"{p}: image has {dim} dimensions {simg.GetSize()}; expected 3D (X, Y, Z) or 4D"
            )
        if 0 in array.shape:
            raise ImageReadError(f"{p}: image has a zero-size dimension {simg.GetSize()}")
        geometry = _sitk_geometry(simg, p)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return Image(np.ascontiguousarray(array), geometry, p)


def write_image(
    path: str | os.PathLike[str],
    array: np.ndarray,
    geometry: Geometry,
    dtype: Any = None,
) -> Path:
    """Write ``array`` (``(C, X, Y, Z)`` or ``(X, Y, Z)``) with ``geometry``, atomically.

    NIfTI gets the affine as both sform and qform (code 1, millimetres), so nibabel and
    SimpleITK read the same grid back; other formats are written with SimpleITK.

    Returns:
        The path written.
    """
    p = Path(path)
    suffix = image_suffix(p)
    if not suffix:
        raise ImageReadError(
            f"{p}: unsupported file extension; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    data = np.asarray(array)
    if data.ndim == 3:
        data = data[None]
    if data.ndim != 4 or tuple(data.shape[1:]) != geometry.shape:
        raise ValueError(
            f"array shape {array.shape} does not match geometry shape {geometry.shape}"
        )
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    if data.dtype == np.float16:
        data = data.astype(np.float32)
    if suffix in NIFTI_SUFFIXES:
        vol = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, 3)
        nimg = nib.Nifti1Image(np.ascontiguousarray(vol), geometry.affine)
        nimg.set_sform(geometry.affine, code=1)
        nimg.set_qform(geometry.affine, code=1)
        nimg.header.set_xyzt_units("mm", "sec")
        with atomic_open(p, "wb") as f:
            f.write(nimg.to_bytes() if suffix == ".nii" else _gzip(nimg.to_bytes()))
        return p
    if data.shape[0] == 1:
        simg = sitk.GetImageFromArray(np.transpose(data[0], (2, 1, 0)))
    else:
        simg = sitk.GetImageFromArray(np.transpose(data, (3, 2, 1, 0)), isVector=True)
    simg.SetSpacing(geometry.spacing)
    simg.SetOrigin(geometry.origin)
    simg.SetDirection(tuple(float(v) for v in geometry.direction.ravel()))
    p.parent.mkdir(parents=True, exist_ok=True)
    # Write into a private folder beside the target, then move: for .mhd the data file first and
    # the header (which names it) last, so a reader never finds a header without its data.
    tmpdir = make_temp_dir(p.parent, prefix=f".{p.name}.")
    try:
        sitk.WriteImage(simg, str(tmpdir / p.name), True)
        written = sorted(tmpdir.iterdir(), key=lambda f: f.name == p.name)
        for part in written:
            os.replace(part, p.parent / part.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return p


def _gzip(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=1, mtime=0)
