"""Task folders: parse ``dataset.json`` (MSD or nnU-Net v2 raw) into a typed :class:`Task`.

An MSD task folder holds ``dataset.json``, ``imagesTr/``, ``labelsTr/`` and ``imagesTs/``; each
case is one image file (3D, or 4D with the channels last) and, for training cases, one label file.
An nnU-Net v2 raw folder stores one file per channel (``case_0000.nii.gz``, ``case_0001.nii.gz``)
and lists no cases in ``dataset.json``; they are discovered from ``imagesTr/`` and ``labelsTr/``.

The quirks of the official MSD files are accepted: ``"relase"`` for ``"release"``, ``test`` as a
list of strings (or of ``{"image": ...}`` objects), ``"./"`` prefixes, and macOS ``"._"`` debris
files, which are ignored wherever they appear.

Every file a ``dataset.json`` names (or an nnU-Net folder holds) must lie inside the task folder
once symlinks are resolved: an absolute path or ``../`` entry, or a symlink out of the folder, is
a :class:`DatasetError` unless the caller allows outside paths (``allow_outside_paths=True``, or
inside :func:`outside_paths_allowed`, which the CLI's ``--allow-outside-paths`` enters); the
files found outside are then listed in ``Task.outside_files`` and the ``inspect`` summary says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from decathlon.errors import DatasetError
from decathlon.io import Image, image_suffix, read_image
from decathlon.layouts import Case, is_debris, parse_msd, parse_nnunet, read_dataset_json

if TYPE_CHECKING:
    from decathlon.tasks import MSDTask

__all__ = [
    "AFFINE_ATOL",
    "Case",
    "Task",
    "check_label_values",
    "is_debris",
    "load_task",
    "outside_paths_allowed",
    "read_case",
]

_ALLOW_OUTSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "decathlon_allow_outside_paths", default=False
)


@contextlib.contextmanager
def outside_paths_allowed(allow: bool = True) -> Iterator[None]:
    """Within the block, :func:`load_task` accepts case files outside the task folder by
    default (what ``--allow-outside-paths`` does for a whole command)."""
    token = _ALLOW_OUTSIDE.set(allow)
    try:
        yield
    finally:
        _ALLOW_OUTSIDE.reset(token)


log = logging.getLogger(__name__)

DATASET_JSON = "dataset.json"

# Affines of an image and its label (or of the channel files of one case) may differ by this
# many millimetres (absolute, per matrix entry) before they count as different grids.
AFFINE_ATOL = 1e-3
AFFINE_RTOL = 1e-4


@dataclass(frozen=True)
class Task:
    """A parsed task folder.

    Args:
        root: the task folder.
        name: the task name from ``dataset.json`` (the folder name if it has none).
        modalities: modality names, index = channel (``("CT",)``, ``("FLAIR", "T1w", ...)``).
        labels: label value -> name, including ``0: "background"``.
        training: the training cases (with labels).
        test: the test cases (without labels).
        layout: ``"msd"`` or ``"nnunet"``.
        tensor_image_size: ``"3D"`` or ``"4D"`` (MSD's ``tensorImageSize``).
        metadata: the remaining ``dataset.json`` fields (description, reference, licence, release).
        warnings: non-fatal problems found while parsing (one line each).
        msd: the official MSD task this folder is, recognised by name, or ``None``.
        outside_files: the case files outside the task folder (only with outside paths allowed).
    """

    root: Path
    name: str
    modalities: tuple[str, ...]
    labels: dict[int, str]
    training: tuple[Case, ...]
    test: tuple[Case, ...]
    layout: str = "msd"
    tensor_image_size: str = "3D"
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    msd: MSDTask | None = field(default=None, compare=False)
    outside_files: tuple[Path, ...] = field(default=(), compare=False)

    @property
    def num_channels(self) -> int:
        """Number of image channels (modalities)."""
        return len(self.modalities)

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.labels)

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """The label values other than background, ascending."""
        return tuple(sorted(v for v in self.labels if v != 0))

    @property
    def cases(self) -> tuple[Case, ...]:
        """Training cases, then test cases."""
        return self.training + self.test

    @property
    def dataset_json(self) -> Path:
        """The task's ``dataset.json``."""
        return self.root / DATASET_JSON

    def case(self, name: str) -> Case:
        """The case called ``name`` (training or test).

        Raises:
            DatasetError: no such case.
        """
        for c in self.cases:
            if c.name == name:
                return c
        raise DatasetError(f"{self.dataset_json}: no case named {name!r}")


# --------------------------------------------------------------------------------------------
# dataset.json parsing
# --------------------------------------------------------------------------------------------


def load_task(
    task_dir: str | os.PathLike[str],
    *,
    check_files: bool = True,
    allow_outside_paths: bool | None = None,
) -> Task:
    """Parse and check a task folder (MSD or nnU-Net v2 raw).

    Args:
        task_dir: the folder holding ``dataset.json``.
        check_files: also check that every referenced file exists and has a supported extension
            (cheap: no file is opened). :func:`decathlon.validate.validate_task` reads them all.
        allow_outside_paths: accept case files outside the task folder (after resolving
            symlinks); ``None``: as :func:`outside_paths_allowed` says (default no).

    Returns:
        The task; non-fatal problems (a ``numTraining`` that disagrees with the case list, a
        mismatch with the official MSD metadata) are logged and kept in ``Task.warnings``.

    Raises:
        DatasetError: one line naming ``dataset.json`` (or the file) and the field at fault.
    """
    root = Path(task_dir)
    if not root.exists():
        raise DatasetError(f"{root}: task folder does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; expected a task folder with dataset.json")
    path = root / DATASET_JSON
    data = read_dataset_json(path)
    nnunet = "channel_names" in data or ("file_ending" in data and "modality" not in data)
    parsed = parse_nnunet(root, data, path) if nnunet else parse_msd(root, data, path)
    training: list[Case] = parsed["training"]
    test: list[Case] = parsed["test"]

    seen: dict[str, str] = {}
    for kind, cases in (("training", training), ("test", test)):
        for c in cases:
            if c.name in seen:
                raise DatasetError(
                    f"{path}: duplicate case name {c.name!r} ({seen[c.name]} and {kind}); "
                    "case names must be unique"
                )
            seen[c.name] = kind
    if not training:
        raise DatasetError(f"{path}: no training cases")

    warnings: list[str] = []
    for key, cases in (("numTraining", training), ("numTest", test)):
        if key in data:
            try:
                declared = int(data[key])
            except (TypeError, ValueError):
                warnings.append(f"{path}: field {key!r} is not a number ({data[key]!r})")
                continue
            if declared != len(cases):
                warnings.append(
                    f"{path}: field {key!r} says {declared} but {len(cases)} cases are listed"
                )

    meta_keys = ("description", "reference", "licence", "license", "release", "relase")
    metadata = {k: data[k] for k in meta_keys if k in data}
    if "relase" in metadata and "release" not in metadata:
        metadata["release"] = metadata.pop("relase")
    name = str(data.get("name") or root.name)
    task = Task(
        root=root,
        name=name,
        modalities=parsed["modalities"],
        labels=parsed["labels"],
        training=tuple(training),
        test=tuple(test),
        layout=parsed["layout"],
        tensor_image_size=parsed["tensor_image_size"],
        metadata=metadata,
    )
    allow = _ALLOW_OUTSIDE.get() if allow_outside_paths is None else allow_outside_paths
    outside = _outside_files(task)
    if outside and not allow:
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        raise DatasetError(
            f"{outside[0]}: listed in {path} but outside the task folder{more}; "
            "pass --allow-outside-paths (allow_outside_paths=True) to read files kept elsewhere"
        )
    if outside:
        warnings.append(f"{path}: {len(outside)} case file(s) outside the task folder, allowed")
    object.__setattr__(task, "outside_files", tuple(outside))
    if check_files:
        _check_files(task)

    from decathlon.tasks import compare_with_msd, msd_task

    msd = msd_task(root.name) or msd_task(name)
    if msd is not None:
        warnings.extend(compare_with_msd(task, msd))
    for w in warnings:
        log.warning("%s", w)
    object.__setattr__(task, "warnings", tuple(warnings))
    object.__setattr__(task, "msd", msd)
    return task


def _outside_files(task: Task) -> list[Path]:
    """The case files that do not lie inside the task folder once symlinks are resolved."""
    root = Path(os.path.realpath(task.root))
    outside = []
    for case in task.cases:
        for f in case.files:
            if not Path(os.path.realpath(f)).is_relative_to(root):
                outside.append(f)
    return outside


def _check_files(task: Task) -> None:
    missing = []
    for case in task.cases:
        for f in case.files:
            if not image_suffix(f):
                raise DatasetError(
                    f"{f}: unsupported file extension (case {case.name!r} in {task.dataset_json})"
                )
            if not f.is_file():
                missing.append(f)
    if missing:
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise DatasetError(f"{missing[0]}: file not found, listed in {task.dataset_json}{more}")


# --------------------------------------------------------------------------------------------
# reading a case
# --------------------------------------------------------------------------------------------


def check_label_values(
    values: np.ndarray, declared: dict[int, str] | None, path: Path
) -> str | None:
    """A one-line problem if ``values`` (a label array) holds fractional or undeclared values."""
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)):
            return f"{path}: label holds NaN or infinite values"
        frac = values != np.round(values)
        if np.any(frac):
            example = float(values[frac].flat[0])
            return (
                f"{path}: label holds fractional values (e.g. {example:g} in "
                f"{int(frac.sum())} voxels); labels must be integers"
            )
    if declared is not None:
        present = np.unique(values)
        bad = sorted({int(v) for v in present} - set(declared))
        if bad:
            return (
                f"{path}: label values {bad} are not declared in dataset.json "
                f"(declared: {sorted(declared)})"
            )
    return None


def _as_label_array(array: np.ndarray) -> np.ndarray:
    if array.size and (array.min() < 0 or array.max() > 255):
        return np.rint(array).astype(np.int32)
    return np.rint(array).astype(np.uint8) if array.dtype.kind == "f" else array.astype(np.uint8)


def read_case(
    case: Case,
    *,
    num_channels: int | None = None,
    labels: dict[int, str] | None = None,
) -> tuple[Image, Image | None]:
    """Read a case: the image as float32 ``(C, X, Y, Z)`` and the label as integer ``(1, X, Y, Z)``.

    Per-channel files (nnU-Net raw) are stacked; their grids must agree. The label's grid must
    equal the image's (affines within :data:`AFFINE_ATOL` millimetres).

    Args:
        case: the case to read.
        num_channels: if given, the channel count the task declares (``len(modality)``).
        labels: if given, the declared labels; other label values are an error.

    Returns:
        ``(image, label)``; ``label`` is ``None`` for test cases. The label array is uint8 (int32
        if its values do not fit).

    Raises:
        ImageReadError: a file is missing, unreadable, truncated or not 3D/4D.
        DatasetError: grids disagree, wrong channel count, non-finite intensities, or bad labels.
    """
    parts = [read_image(p, dtype=np.float32) for p in case.images]
    first = parts[0]
    for part in parts[1:]:
        if part.geometry.shape != first.geometry.shape:
            raise DatasetError(
                f"{part.path}: shape {part.geometry.shape} differs from {first.path} "
                f"{first.geometry.shape} (channels of case {case.name!r})"
            )
        if not part.geometry.allclose(first.geometry, atol=AFFINE_ATOL, rtol=AFFINE_RTOL):
            raise DatasetError(
                f"{part.path}: affine differs from {first.path} (channels of case {case.name!r})"
            )
    array = parts[0].array if len(parts) == 1 else np.concatenate([p.array for p in parts], 0)
    image = Image(array, first.geometry, first.path)
    if num_channels is not None and image.channels != num_channels:
        raise DatasetError(
            f"{first.path}: image has {image.channels} channels but dataset.json declares "
            f"{num_channels} modalities"
        )
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise DatasetError(f"{first.path}: {bad} voxels are NaN or infinite")
    if case.label is None:
        return image, None
    raw = read_image(case.label)
    if raw.channels != 1:
        raise DatasetError(f"{case.label}: label has {raw.channels} channels; expected 1")
    if raw.geometry.shape != image.geometry.shape:
        raise DatasetError(
            f"{case.label}: label shape {raw.geometry.shape} differs from image shape "
            f"{image.geometry.shape} ({first.path})"
        )
    if not raw.geometry.allclose(image.geometry, atol=AFFINE_ATOL, rtol=AFFINE_RTOL):
        diff = float(np.max(np.abs(raw.geometry.affine - image.geometry.affine)))
        raise DatasetError(
            f"{case.label}: label affine differs from the image's by up to {diff:.3g} mm "
            f"(tolerance {AFFINE_ATOL} mm; {first.path})"
        )
    problem = check_label_values(raw.array, labels, case.label)
    if problem:
        raise DatasetError(problem)
    return image, Image(_as_label_array(raw.array), image.geometry, case.label)
