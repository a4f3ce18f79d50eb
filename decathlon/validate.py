"""Validate a whole task folder and summarise it (``nasmed inspect``).

:func:`validate_task` reads every case once and collects **all** problems, one line each, naming
the file: missing, unreadable or truncated files, unsupported extensions, image/label shape or
affine mismatches, undeclared or fractional label values, NaN or infinite intensities, a channel
count that differs from ``len(modality)``, 2D images in a 3D task, zero-size dimensions. An empty
label (no foreground) is a warning, not a problem. The :class:`Report` also carries a summary:
case counts, spacing and size statistics, and the foreground share of each class.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from decathlon.datalist import (
    AFFINE_ATOL,
    AFFINE_RTOL,
    Case,
    Task,
    check_label_values,
    load_task,
)
from decathlon.errors import DecathlonError, ValidationError
from decathlon.io import Geometry, Image, image_suffix, read_geometry, read_image

__all__ = ["CaseStats", "Report", "Summary", "validate_task"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseStats:
    """What validation learnt about one readable case."""

    name: str
    training: bool
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    orientation: str
    oblique: bool
    voxels_per_label: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    """Summary statistics of a task (over the cases that could be read)."""

    name: str
    layout: str
    num_training: int
    num_test: int
    modalities: tuple[str, ...]
    labels: dict[int, str]
    spacing_median: tuple[float, float, float]
    spacing_min: tuple[float, float, float]
    spacing_max: tuple[float, float, float]
    size_median: tuple[float, float, float]
    size_min: tuple[int, int, int]
    size_max: tuple[int, int, int]
    orientations: dict[str, int]
    oblique_cases: int
    foreground_share: dict[int, float]
    cases_with_label: dict[int, int]
    outside_files: int = 0

    def table(self) -> str:
        """The summary as an aligned plain-text table."""

        def fmt3(v: Iterable[float], p: int = 2) -> str:
            return " x ".join(f"{x:.{p}f}".rstrip("0").rstrip(".") for x in v)

        rows = [
            ("task", f"{self.name} ({self.layout})"),
            ("cases", f"{self.num_training} training, {self.num_test} test"),
            ("modalities", ", ".join(f"{i}: {m}" for i, m in enumerate(self.modalities))),
            ("labels", ", ".join(f"{k}: {v}" for k, v in self.labels.items())),
            ("spacing median (mm)", fmt3(self.spacing_median, 3)),
            ("spacing min (mm)", fmt3(self.spacing_min, 3)),
            ("spacing max (mm)", fmt3(self.spacing_max, 3)),
            ("size median", fmt3(self.size_median, 1)),
            ("size min", fmt3(self.size_min)),
            ("size max", fmt3(self.size_max)),
            ("orientations", ", ".join(f"{k} {v}" for k, v in sorted(self.orientations.items()))),
            ("oblique cases", str(self.oblique_cases)),
        ]
        if self.outside_files:
            rows.append(
                (
                    "outside paths",
                    f"{self.outside_files} case file(s) outside the task folder "
                    "(allowed by --allow-outside-paths)",
                )
            )
        for k in self.labels:
            if k == 0:
                continue
            rows.append(
                (
                    f"label {k} ({self.labels[k]})",
                    f"{100 * self.foreground_share.get(k, 0.0):.3f}% of voxels, "
                    f"present in {self.cases_with_label.get(k, 0)}/{self.num_training} cases",
                )
            )
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@dataclass
class Report:
    """The result of :func:`validate_task`.

    Args:
        task_dir: the folder validated.
        problems: every problem found, one line each, naming the file.
        warnings: non-fatal findings (empty labels, ``numTraining`` mismatch, ...).
        task: the parsed task, ``None`` if ``dataset.json`` itself is unusable.
        cases: statistics of each case that could be read.
    """

    task_dir: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    task: Task | None = None
    cases: list[CaseStats] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found (warnings allowed)."""
        return not self.problems

    @property
    def summary(self) -> Summary | None:
        """Summary statistics, or ``None`` when the task could not be parsed or read at all."""
        if self.task is None or not self.cases:
            return None
        return _summarise(self.task, self.cases)

    def raise_if_problems(self) -> None:
        """Raise :class:`~decathlon.errors.ValidationError` listing every problem, if any."""
        if self.problems:
            raise ValidationError(str(self.task_dir), self.problems)


# --------------------------------------------------------------------------------------------
# per case
# --------------------------------------------------------------------------------------------


@dataclass
class _CaseResult:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: CaseStats | None = None


def _check_file(path: Path, where: Path) -> str | None:
    if not image_suffix(path):
        return f"{path}: unsupported file extension (listed in {where})"
    if not path.is_file():
        return f"{path}: file not found (listed in {where})"
    return None


def _read_checked(
    path: Path, task: Task, expect_channels: int, out: _CaseResult, *, label: bool = False
) -> Image | None:
    """Read one image file, recording every problem; ``None`` when it cannot be used."""
    try:
        geometry, channels = read_geometry(path)
    except DecathlonError as exc:
        out.problems.append(str(exc))
        return None
    if 0 in geometry.shape or channels == 0:
        out.problems.append(f"{path}: image has a zero-size dimension {geometry.shape}")
        return None
    if 1 in geometry.shape:
        out.problems.append(
            f"{path}: image is 2D (shape {geometry.shape}) in a {task.tensor_image_size} task"
        )
        return None
    if channels != expect_channels and label:
        out.problems.append(f"{path}: label has {channels} channels; expected 1")
    elif channels != expect_channels:
        out.problems.append(
            f"{path}: image has {channels} channels but dataset.json declares "
            f"{expect_channels} ({', '.join(task.modalities)})"
            if task.layout == "msd"
            else f"{path}: image has {channels} channels; nnU-Net raw files hold one channel each"
        )
    try:
        return read_image(path)
    except DecathlonError as exc:
        out.problems.append(str(exc))
        return None


def _grid_problem(
    path: Path, geom: Geometry, ref: Geometry, ref_path: Path, what: str
) -> str | None:
    if geom.shape != ref.shape:
        return f"{path}: {what} shape {geom.shape} differs from {ref_path} shape {ref.shape}"
    if not geom.allclose(ref, atol=AFFINE_ATOL, rtol=AFFINE_RTOL):
        diff = float(np.max(np.abs(geom.affine - ref.affine)))
        return (
            f"{path}: {what} affine differs from {ref_path} by up to {diff:.3g} mm "
            f"(tolerance {AFFINE_ATOL} mm)"
        )
    return None


def _check_case(task: Task, case: Case, training: bool) -> _CaseResult:
    out = _CaseResult()
    where = task.dataset_json
    image_problems = [p for p in (_check_file(f, where) for f in case.images) if p]
    label_problem = _check_file(case.label, where) if case.label is not None else None
    out.problems.extend(image_problems + ([label_problem] if label_problem else []))
    if image_problems:
        return out
    expect = task.num_channels if task.layout == "msd" else 1
    images = [_read_checked(f, task, expect, out) for f in case.images]
    ref: Image | None = None
    for img in images:
        if img is None:
            continue
        bad = int(img.array.size - np.count_nonzero(np.isfinite(img.array)))
        if bad:
            out.problems.append(f"{img.path}: {bad} voxels are NaN or infinite")
        if ref is None:
            ref = img
        else:
            assert img.path is not None and ref.path is not None
            p = _grid_problem(img.path, img.geometry, ref.geometry, ref.path, "channel")
            if p:
                out.problems.append(p)
    if ref is None or any(i is None for i in images):
        return out
    assert ref.path is not None
    counts: dict[int, int] = {}
    if case.label is not None and label_problem is None:
        label = _read_checked(case.label, task, 1, out, label=True)
        if label is not None:
            p = _grid_problem(case.label, label.geometry, ref.geometry, ref.path, "label")
            if p:
                out.problems.append(p)
            p = check_label_values(label.array, task.labels, case.label)
            if p:
                out.problems.append(p)
            else:
                values, n = np.unique(label.array, return_counts=True)
                counts = {int(v): int(c) for v, c in zip(values, n)}
                if not any(v != 0 for v in counts):
                    out.warnings.append(f"{case.label}: label is empty (no foreground voxels)")
    g = ref.geometry
    out.stats = CaseStats(
        name=case.name,
        training=training,
        shape=g.shape,
        spacing=g.spacing,
        orientation=g.orientation,
        oblique=g.is_oblique,
        voxels_per_label=counts,
    )
    return out


# --------------------------------------------------------------------------------------------
# the task
# --------------------------------------------------------------------------------------------


def validate_task(
    task_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    allow_outside_paths: bool | None = None,
) -> Report:
    """Check a task folder completely and summarise it.

    Args:
        task_dir: the folder holding ``dataset.json``.
        workers: read this many cases at a time (threads).
        allow_outside_paths: as in :func:`decathlon.datalist.load_task`.

    Returns:
        A :class:`Report`; ``report.ok`` is False when any problem was found. Problems with
        ``dataset.json`` itself (missing, invalid JSON, missing fields, duplicate cases) stop the
        validation early and are the only problem reported.
    """
    report = Report(Path(task_dir))
    try:
        task = load_task(task_dir, check_files=False, allow_outside_paths=allow_outside_paths)
    except DecathlonError as exc:
        report.problems.append(str(exc))
        return report
    report.task = task
    report.warnings.extend(task.warnings)
    jobs = [(c, True) for c in task.training] + [(c, False) for c in task.test]
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda j: _check_case(task, *j), jobs))
    else:
        results = [_check_case(task, c, t) for c, t in jobs]
    for r in results:
        report.problems.extend(r.problems)
        report.warnings.extend(r.warnings)
        if r.stats is not None:
            report.cases.append(r.stats)
    log.debug("validated %s: %d problems", task_dir, len(report.problems))
    return report


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _summarise(task: Task, cases: list[CaseStats]) -> Summary:
    spacing = np.array([c.spacing for c in cases])
    sizes = np.array([c.shape for c in cases])
    train = [c for c in cases if c.training and c.voxels_per_label]
    total = sum(sum(c.voxels_per_label.values()) for c in train)
    share = {
        k: (sum(c.voxels_per_label.get(k, 0) for c in train) / total if total else 0.0)
        for k in task.foreground_labels
    }
    present = {k: sum(1 for c in train if c.voxels_per_label.get(k, 0) > 0) for k in share}
    orientations: dict[str, int] = {}
    for c in cases:
        orientations[c.orientation] = orientations.get(c.orientation, 0) + 1
    mins, maxs = sizes.min(0), sizes.max(0)
    return Summary(
        name=task.name,
        layout=task.layout,
        num_training=len(task.training),
        num_test=len(task.test),
        modalities=task.modalities,
        labels=dict(task.labels),
        spacing_median=_triple(np.median(spacing, 0)),
        spacing_min=_triple(spacing.min(0)),
        spacing_max=_triple(spacing.max(0)),
        size_median=_triple(np.median(sizes, 0)),
        size_min=(int(mins[0]), int(mins[1]), int(mins[2])),
        size_max=(int(maxs[0]), int(maxs[1]), int(maxs[2])),
        orientations=orientations,
        oblique_cases=sum(1 for c in cases if c.oblique),
        foreground_share=share,
        cases_with_label=present,
        outside_files=len(task.outside_files),
    )
