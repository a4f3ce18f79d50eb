"""Tiny hand-built task folders for tests, and one broken variant per kind of bad input.

:func:`write_task` writes a valid 1-modality MSD task of a few 10x9x8 cases (LPS, anisotropic) in
milliseconds; :func:`bad_task` writes one and breaks it in the way a key of :data:`BAD_INPUTS`
names, returning the file and the words the resulting error must contain. Used by the tests of
``decathlon`` and ``nasmed``; useful to test any code that consumes task folders.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from decathlon.io import Geometry, write_image

__all__ = [
    "BAD_INPUTS",
    "SHAPE",
    "bad_task",
    "case_arrays",
    "lps_geometry",
    "read_json",
    "restore_voxel_order",
    "store_reordered",
    "write_json",
    "write_task",
]

SHAPE = (10, 9, 8)


def lps_geometry(shape: tuple[int, int, int] = SHAPE) -> Geometry:
    """An anisotropic LPS grid with a non-zero origin."""
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    affine[:3, 3] = [12.0, -30.0, 5.0]
    return Geometry(affine, shape)


def case_arrays(i: int, shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """An image (float32) and a label (uint8, classes 0..2) for case ``i``."""
    rng = np.random.default_rng(i)
    label = np.zeros(shape, np.uint8)
    label[2:6, 2:6, 2:5] = 1
    label[3:4, 3:4, 3:4] = 2
    image = (100.0 * label + rng.normal(0, 10, shape)).astype(np.float32)
    return image, label


def store_reordered(
    array: np.ndarray, affine: np.ndarray, flips: tuple[int, ...], perm: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The same image ``(C, X, Y, Z)`` stored another way: voxel axes ``flips`` flipped, then
    permuted (new axis ``i`` is old axis ``perm[i]``); returns the array and its affine (every
    voxel keeps its world position)."""
    out, aff = array, np.asarray(affine, dtype=np.float64).copy()
    shape = array.shape[1:]
    for ax in flips:
        out = np.flip(out, axis=1 + ax)
        flip = np.eye(4)
        flip[ax, ax], flip[ax, 3] = -1, shape[ax] - 1
        aff = aff @ flip
    out = np.transpose(out, (0, *(1 + p for p in perm)))
    permute = np.zeros((4, 4))
    for new, old in enumerate(perm):
        permute[old, new] = 1
    permute[3, 3] = 1
    return np.ascontiguousarray(out), aff @ permute


def restore_voxel_order(
    array: np.ndarray, flips: tuple[int, ...], perm: tuple[int, ...]
) -> np.ndarray:
    """Inverse of :func:`store_reordered` on an array."""
    out = np.transpose(array, (0, *(1 + int(i) for i in np.argsort(perm))))
    for ax in flips:
        out = np.flip(out, axis=1 + ax)
    return out


def write_task(
    root: Path,
    *,
    cases: int = 2,
    dataset: dict[str, Any] | None = None,
    suffix: str = ".nii.gz",
) -> Path:
    """Write a valid 1-modality MSD task (labels 0..2) with ``cases`` training cases + 1 test."""
    root.mkdir(parents=True, exist_ok=True)
    geometry = lps_geometry()
    training = []
    for i in range(cases):
        image, label = case_arrays(i)
        write_image(root / "imagesTr" / f"case_{i}{suffix}", image, geometry)
        write_image(root / "labelsTr" / f"case_{i}{suffix}", label, geometry)
        training.append(
            {"image": f"./imagesTr/case_{i}{suffix}", "label": f"./labelsTr/case_{i}{suffix}"}
        )
    image, _ = case_arrays(99)
    write_image(root / "imagesTs" / f"case_99{suffix}", image, geometry)
    data = {
        "name": "Tiny",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "organ", "2": "lesion"},
        "numTraining": cases,
        "numTest": 1,
        "training": training,
        "test": [f"./imagesTs/case_99{suffix}"],
    }
    data.update(dataset or {})
    write_json(root / "dataset.json", data)
    return root


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (not atomic: tests only)."""
    path.write_text(json.dumps(data, indent=1))


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(path.read_text())


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    img = nib.Nifti1Image(array, lps_geometry().affine if affine is None else affine)
    path.write_bytes(gzip.compress(img.to_bytes()))


# --------------------------------------------------------------------------------------------
# bad inputs: each breaks a valid task and returns (file named in the error, words in it)
# --------------------------------------------------------------------------------------------

Breaker = Callable[[Path], tuple[str, str]]


def _missing_dataset_json(root: Path) -> tuple[str, str]:
    (root / "dataset.json").unlink()
    return "dataset.json", "missing dataset.json"


def _invalid_dataset_json(root: Path) -> tuple[str, str]:
    (root / "dataset.json").write_text('{"name": "Tiny", "labels": {')
    return "dataset.json", "invalid JSON"


def _missing_key(root: Path) -> tuple[str, str]:
    data = read_json(root / "dataset.json")
    del data["labels"]
    write_json(root / "dataset.json", data)
    return "dataset.json", "'labels'"


def _missing_image(root: Path) -> tuple[str, str]:
    (root / "imagesTr" / "case_1.nii.gz").unlink()
    return "imagesTr/case_1.nii.gz", "not found"


def _missing_label(root: Path) -> tuple[str, str]:
    (root / "labelsTr" / "case_0.nii.gz").unlink()
    return "labelsTr/case_0.nii.gz", "not found"


def _unreadable(root: Path) -> tuple[str, str]:
    (root / "imagesTr" / "case_1.nii.gz").write_bytes(b"this is not a NIfTI file" * 20)
    return "imagesTr/case_1.nii.gz", "cannot read"


def _truncated(root: Path) -> tuple[str, str]:
    f = root / "imagesTr" / "case_1.nii.gz"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    return "imagesTr/case_1.nii.gz", "truncated"


def _shape_mismatch(root: Path) -> tuple[str, str]:
    _save_nifti(root / "labelsTr" / "case_1.nii.gz", np.zeros((10, 9, 7), np.uint8))
    return "labelsTr/case_1.nii.gz", "shape"


def _affine_mismatch(root: Path) -> tuple[str, str]:
    affine = lps_geometry().affine.copy()
    affine[0, 3] += 2.0
    _, label = case_arrays(1)
    _save_nifti(root / "labelsTr" / "case_1.nii.gz", label, affine)
    return "labelsTr/case_1.nii.gz", "affine"


def _undeclared_label(root: Path) -> tuple[str, str]:
    _, label = case_arrays(1)
    label[0, 0, 0] = 7
    _save_nifti(root / "labelsTr" / "case_1.nii.gz", label)
    return "labelsTr/case_1.nii.gz", "not declared"


def _fractional_label(root: Path) -> tuple[str, str]:
    _, label = case_arrays(1)
    lab = label.astype(np.float32)
    lab[0, 0, 0] = 0.5
    _save_nifti(root / "labelsTr" / "case_1.nii.gz", lab)
    return "labelsTr/case_1.nii.gz", "fractional"


def _nan_intensity(root: Path) -> tuple[str, str]:
    image, _ = case_arrays(1)
    image[1, 1, 1] = np.nan
    _save_nifti(root / "imagesTr" / "case_1.nii.gz", image)
    return "imagesTr/case_1.nii.gz", "NaN or infinite"


def _inf_intensity(root: Path) -> tuple[str, str]:
    image, _ = case_arrays(1)
    image[1, 1, 1] = np.inf
    _save_nifti(root / "imagesTr" / "case_1.nii.gz", image)
    return "imagesTr/case_1.nii.gz", "NaN or infinite"


def _channel_count(root: Path) -> tuple[str, str]:
    image, _ = case_arrays(1)
    _save_nifti(root / "imagesTr" / "case_1.nii.gz", np.stack([image, image], axis=-1))
    return "imagesTr/case_1.nii.gz", "channels"


def _image_2d(root: Path) -> tuple[str, str]:
    image, _ = case_arrays(1)
    _save_nifti(root / "imagesTr" / "case_1.nii.gz", image[:, :, 0])
    return "imagesTr/case_1.nii.gz", "2D"


def _unsupported_extension(root: Path) -> tuple[str, str]:
    data = read_json(root / "dataset.json")
    data["training"][1]["image"] = "./imagesTr/case_1.png"
    (root / "imagesTr" / "case_1.png").write_bytes(b"\x89PNG")
    write_json(root / "dataset.json", data)
    return "imagesTr/case_1.png", "unsupported file extension"


def _duplicate_case(root: Path) -> tuple[str, str]:
    data = read_json(root / "dataset.json")
    data["training"].append(dict(data["training"][0]))
    write_json(root / "dataset.json", data)
    return "dataset.json", "duplicate case name 'case_0'"


def _zero_size(root: Path) -> tuple[str, str]:
    _save_nifti(root / "imagesTr" / "case_1.nii.gz", np.zeros((10, 0, 8), np.float32))
    return "imagesTr/case_1.nii.gz", "zero-size dimension"


BAD_INPUTS: dict[str, Breaker] = {
    "missing_dataset_json": _missing_dataset_json,
    "invalid_dataset_json": _invalid_dataset_json,
    "missing_required_key": _missing_key,
    "missing_image_file": _missing_image,
    "missing_label_file": _missing_label,
    "unreadable_nifti": _unreadable,
    "truncated_nifti": _truncated,
    "shape_mismatch": _shape_mismatch,
    "affine_mismatch": _affine_mismatch,
    "undeclared_label_values": _undeclared_label,
    "fractional_label_values": _fractional_label,
    "nan_intensity": _nan_intensity,
    "inf_intensity": _inf_intensity,
    "channel_count_mismatch": _channel_count,
    "image_2d_in_3d_task": _image_2d,
    "unsupported_extension": _unsupported_extension,
    "duplicate_case_names": _duplicate_case,
    "zero_size_dimension": _zero_size,
}


def bad_task(root: Path, kind: str) -> tuple[Path, str, str]:
    """A task broken in the way ``kind`` names: ``(task_dir, file in the message, words)``."""
    write_task(root)
    where, words = BAD_INPUTS[kind](root)
    return root, where, words
