"""Write synthetic MSD-format tasks: real NIfTI files, real geometry, learnable but not trivial.

Each case is a body-like ellipsoid holding ``classes`` organ-like structures: smooth blobs of
decreasing size whose outlines are perturbed by smooth noise; when ``classes >= 2`` the last class
is a small lesion-like structure inside the first organ. Intensities are drawn per tissue from
distributions that overlap (contrast comparable to the noise), then blurred (partial volume), given
texture, noise and a smooth bias field. Every modality maps the tissues to different intensities.

``ct=True`` (the default when ``modalities == 1``) writes one CT-like channel in Hounsfield-like
units (air -1000, soft tissue 20..120, an unlabelled bone-like rod), stored as int16 like real CT;
otherwise MR-like channels (``"T1w"``, ``"T2w"``, ``"FLAIR"``, ``"ADC"``) in arbitrary units with a
per-case scanner gain, background exactly 0, stored as float32.

Geometry is non-trivial: anisotropic spacing (in-plane 0.7-1.0 mm, slices 1.5-3.5 mm), orientations
cycling through RAS, LPS, LAS and LPI, every third case oblique (rotated 8-20 degrees), and origins
away from zero. All cases share ``shape``.

``scene="structures"`` writes another kind of case instead, one where the network's architecture
matters (thin tubes, hollow spheres labelled filled; :mod:`decathlon.structures`);
``scene="context"`` one whose single class needs coarse-scale reasoning (shells labelled only when
they hold a nucleus).

The output is deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from decathlon.errors import DecathlonError
from decathlon.fsutil import atomic_write_json, make_temp_dir
from decathlon.io import write_image
from decathlon.memory import check_memory
from decathlon.outputs import check_dir
from decathlon.phantom import MRI_MODALITIES, synthesize_case
from decathlon.structures import (
    CONTEXT_LABELS,
    STRUCTURE_LABELS,
    synthesize_context_case,
    synthesize_structures_case,
)

__all__ = [
    "EMBEDDED_TASK_NAME",
    "GENERATOR_VERSION",
    "MRI_MODALITIES",
    "SCENES",
    "embedded_task",
    "synthesize_case",
    "write_synthetic_task",
]

log = logging.getLogger(__name__)

# Bump when the generator's output changes, so cached embedded tasks are rewritten.
GENERATOR_VERSION = 3
EMBEDDED_TASK_NAME = f"Task00_NasmedSynthetic_v{GENERATOR_VERSION}"
_MARKER = "nasmed_synthetic"
SYNTH_WORK_ARRAYS = 6  # float64 arrays the phantom holds per case besides its channels

#: What a synthetic task shows (``write_synthetic_task(scene=...)``).
SCENES = ("organs", "structures", "context")
#: The scenes of :mod:`decathlon.structures` (1 MR-like channel): their labels.
_STRUCTURE_SCENES = {"structures": STRUCTURE_LABELS, "context": CONTEXT_LABELS}


def _check_args(
    cases: int, shape: tuple[int, ...], classes: int, modalities: int, test_cases: int
) -> tuple[int, int, int]:
    if cases < 1:
        raise DecathlonError(f"synthetic task needs at least 1 training case, not {cases}")
    if test_cases < 0:
        raise DecathlonError(f"test_cases must be >= 0, not {test_cases}")
    if len(shape) != 3 or min(shape) < 8:
        raise DecathlonError(f"synthetic shape must be 3 sizes of at least 8 voxels, not {shape}")
    if not 1 <= classes <= 8:
        raise DecathlonError(f"synthetic classes must be 1..8 foreground classes, not {classes}")
    if not 1 <= modalities <= 4:
        raise DecathlonError(f"synthetic modalities must be 1..4, not {modalities}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _written_by_synth(out: Path) -> bool:
    """Whether ``out`` is a task this module wrote (its dataset.json carries the marker)."""
    try:
        data = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and _MARKER in data


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DecathlonError(f"{out}: output path exists and is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DecathlonError(
                f"{out}: output folder exists and is not empty; choose a new folder or pass "
                "--overwrite"
            )
        if not _written_by_synth(out):  # the output rule: never replace what we did not write
            check_dir(out, "synth")


def write_synthetic_task(
    out_dir: str | os.PathLike[str],
    *,
    cases: int = 8,
    shape: tuple[int, int, int] = (48, 48, 32),
    classes: int = 2,
    modalities: int = 1,
    seed: int = 0,
    test_cases: int = 2,
    name: str | None = None,
    ct: bool | None = None,
    overwrite: bool = False,
    scene: str = "organs",
) -> Path:
    """Write a synthetic MSD task into the folder ``out_dir`` (which becomes the task folder).

    The task is written into a hidden temporary folder beside ``out_dir`` and renamed into place
    when complete, so an interrupted run leaves nothing behind.

    Args:
        out_dir: the task folder to create; it must not exist, or be empty (or ``overwrite``).
        cases: training cases (``synth_000`` ...), each with a label.
        shape: spatial shape of every case, ``(X, Y, Z)``.
        classes: foreground classes (labels 1..classes).
        modalities: channels, 1..4; more than one gives a 4D image per case.
        seed: random seed; the same arguments give the same bytes.
        test_cases: cases in ``imagesTs/``, without labels.
        name: the ``name`` in dataset.json (default ``"Synthetic"``).
        ct: one CT-like channel in Hounsfield-like units; default ``modalities == 1``.
        overwrite: replace a non-empty ``out_dir``.
        scene: ``"organs"`` (the phantom described above), ``"structures"`` (thin tubes and
            hollow spheres whose label needs context; 2 classes) or ``"context"`` (shells
            labelled only when they hold a nucleus, among unlabelled tubes; 1 class):
            :mod:`decathlon.structures`, 1 MR-like channel, isotropic 1 mm; testbeds where the
            architecture matters.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        DecathlonError: ``out_dir`` is a file or a non-empty folder, or an argument is invalid.
    """
    out = Path(out_dir)
    spatial = _check_args(cases, shape, classes, modalities, test_cases)
    if scene not in SCENES:
        raise DecathlonError(f"synthetic scene {scene!r} is not one of {', '.join(SCENES)}")
    if scene in _STRUCTURE_SCENES:
        n_classes = len(_STRUCTURE_SCENES[scene])
        if scene == "context" and classes == 2:
            classes = 1  # 2 is the default of ``classes`` (the organs scene's)
        if classes != n_classes or modalities != 1 or ct:
            raise DecathlonError(
                f"the {scene!r} scene has exactly {n_classes} classes and 1 MR-like modality"
            )
        ct = False
    ct = (modalities == 1) if ct is None else ct
    if ct and modalities != 1:
        raise DecathlonError("a CT-like synthetic task has exactly 1 modality")
    _check_out(out, overwrite)
    # one case at a time: float64 work arrays per modality plus label, distance and noise fields
    check_memory(
        float(np.prod(spatial)) * 8 * (modalities + SYNTH_WORK_ARRAYS),
        f"--shape {' '.join(map(str, spatial))}",
        "use a smaller --shape",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {
        "version": GENERATOR_VERSION,
        "cases": cases,
        "shape": list(spatial),
        "classes": classes,
        "modalities": modalities,
        "seed": seed,
        "test_cases": test_cases,
        "ct": ct,
        **({"scene": scene} if scene != "organs" else {}),
    }
    tmp = make_temp_dir(out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        _write_into(tmp, params, name or "Synthetic")
        _install(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote synthetic task %s (%d training, %d test cases)", out, cases, test_cases)
    return out


def _write_into(folder: Path, params: dict[str, Any], name: str) -> None:
    shape = tuple(params["shape"])
    classes, modalities, ct = params["classes"], params["modalities"], params["ct"]
    names = ("CT",) if ct else MRI_MODALITIES[:modalities]
    training, test = [], []
    total = params["cases"] + params["test_cases"]
    for i in range(total):
        if params.get("scene") == "structures":
            image, label, geometry = synthesize_structures_case(params["seed"], i, shape=shape)
        elif params.get("scene") == "context":
            image, label, geometry = synthesize_context_case(params["seed"], i, shape=shape)
        else:
            image, label, geometry = synthesize_case(
                params["seed"], i, shape=shape, classes=classes, modalities=modalities, ct=ct
            )
        case = f"synth_{i:03d}"
        dtype = np.int16 if ct else np.float32
        if i < params["cases"]:
            write_image(folder / "imagesTr" / f"{case}.nii.gz", image, geometry, dtype=dtype)
            write_image(folder / "labelsTr" / f"{case}.nii.gz", label, geometry, dtype=np.uint8)
            training.append(
                {"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}
            )
        else:
            write_image(folder / "imagesTs" / f"{case}.nii.gz", image, geometry, dtype=dtype)
            test.append(f"./imagesTs/{case}.nii.gz")
    labels = {"0": "background"}
    for k in range(1, classes + 1):
        small = classes >= 2 and k == classes
        labels[str(k)] = "lesion" if small else f"organ{k}"
    if params.get("scene") in _STRUCTURE_SCENES:
        labels.update({str(k): v for k, v in _STRUCTURE_SCENES[params["scene"]].items()})
    dataset = {
        "name": name,
        "description": "Synthetic MSD-format task written by nasmed (decathlon.synthetic)",
        "reference": "nasmed",
        "licence": "CC-BY-SA 4.0",
        "release": f"generator v{GENERATOR_VERSION}",
        "tensorImageSize": "4D" if modalities > 1 else "3D",
        "modality": {str(i): n for i, n in enumerate(names)},
        "labels": labels,
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": test,
        _MARKER: params,
    }
    atomic_write_json(folder / "dataset.json", dataset)


def _install(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists() and overwrite:
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "task")
        try:
            os.replace(tmp, out)
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.replace(tmp, out)
    except OSError as exc:
        raise DecathlonError(f"{out}: cannot create the task folder ({exc.strerror})") from exc


# --------------------------------------------------------------------------------------------
# the embedded default task
# --------------------------------------------------------------------------------------------

EMBEDDED_PARAMS: dict[str, Any] = {
    "cases": 8,
    "shape": (48, 48, 32),
    "classes": 2,
    "modalities": 1,
    "seed": 0,
    "test_cases": 2,
}


def _is_complete(folder: Path) -> bool:
    try:
        data = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    params = data.get(_MARKER, {})
    expected = dict(
        EMBEDDED_PARAMS, shape=list(EMBEDDED_PARAMS["shape"]), version=GENERATOR_VERSION, ct=True
    )
    if params != expected:
        return False
    files = [e["image"] for e in data["training"]] + [e["label"] for e in data["training"]]
    return all((folder / f).is_file() for f in files + list(data["test"]))


def embedded_task(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The embedded default task (CT-like, 8 + 2 cases of 48x48x32, 2 classes, seed 0).

    Written once into ``cache_dir``, else ``$NASMED_CACHE``, else ``~/.cache/nasmed``, and reused
    when already there and complete. Safe when several processes ask at the same time.

    Returns:
        The task folder ``<cache>/Task00_NasmedSynthetic_v<N>``.
    """
    root = Path(cache_dir or os.environ.get("NASMED_CACHE") or Path.home() / ".cache" / "nasmed")
    folder = root / EMBEDDED_TASK_NAME
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        is_file = isinstance(exc, (FileExistsError, NotADirectoryError))
        why = "a part of it is a file" if is_file else exc.strerror
        raise DecathlonError(
            f"{root}: cannot hold the embedded task ({why}); set NASMED_CACHE to a writable folder"
        ) from None
    for attempt in range(3):
        if _is_complete(folder):
            return folder
        log.info("writing the embedded synthetic task to %s", folder)
        stale = folder.exists()  # incomplete, or from an older generator
        try:
            write_synthetic_task(folder, name="NasmedSynthetic", overwrite=stale, **EMBEDDED_PARAMS)
        except (DecathlonError, OSError):
            # another process may have moved or written the folder meanwhile: look again
            if attempt == 2 and not _is_complete(folder):
                raise
    return folder
