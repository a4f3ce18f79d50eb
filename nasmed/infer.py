"""``predict(model_dir, inputs, out_dir)``: segment raw images with a trained run folder.

Each case goes through the plan's preprocessing (:func:`decathlon.preprocess.preprocess_case`:
crop to non-zero, normalise, resample), MONAI sliding-window inference with Gaussian blending
(window = the training patch), optional mirror test-time augmentation (the mean of the softmax
over all 8 flips of the three axes), then the class probabilities are mapped back onto the
input's exact grid (:func:`decathlon.preprocess.restore_to_original`: resampling and crop undone)
and the argmax is written as NIfTI with the input's affine (``OUT_DIR/<case>.nii.gz``, atomic).

Inputs are files or folders of images: MSD style (one file per case, 3D, or 4D with the
modalities as channels) or nnU-Net style (one file per channel, ``<case>_0000.nii.gz``,
``<case>_0001.nii.gz``, ...). Every input is checked (readable, channel count) before anything
is written: headers, channels, affines and the memory needed first, then (for a batch) every
voxel, so a truncated file or NaN in a later case stops the batch before the first write.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn
from tqdm import tqdm

from decathlon.errors import DatasetError
from decathlon.fsutil import ensure_out_dir
from decathlon.io import (
    Geometry,
    Image,
    image_suffix,
    read_geometry,
    read_image,
    strip_suffix,
    write_image,
)
from decathlon.memory import check_memory
from decathlon.orientation import reorientation_of
from decathlon.outputs import check_files, check_outside_datasets, check_separate, record_files
from decathlon.paths import why_unusable
from decathlon.plan import Plan
from decathlon.preprocess import preprocess_case, restore_to_original
from nasmed.engine.precision import Precision, cpu_has_native_bf16, resolve_precision
from nasmed.errors import ConfigError
from nasmed.memory import network_bytes
from nasmed.models.spec import ModelSpec, load_model
from nasmed.postprocess import apply_saved
from nasmed.runtime import resolve_device

__all__ = ["InputCase", "find_inputs", "predict", "predict_bytes", "predict_probabilities"]

log = logging.getLogger(__name__)

SW_BATCH = 2  # sliding-window patches per forward pass
#: a batch's images read by the input check are kept for prediction up to this many bytes
READ_KEEP_BYTES = 1 << 30
#: The writer recorded for the predictions (:mod:`decathlon.outputs`).
VERB = "predict"

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class InputCase:
    """One case to segment: its name and its image files (one, or one per channel)."""

    def __init__(self, name: str, files: Sequence[Path]) -> None:
        self.name = name
        self.files = tuple(files)

    def __repr__(self) -> str:
        return f"InputCase({self.name!r}, {[str(f) for f in self.files]})"


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and image_suffix(p) and not p.name.startswith(".")
    )


def find_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[InputCase]:
    """Group input files and folders into cases.

    A file named ``<case>_NNNN`` (four digits) is channel ``NNNN`` of ``<case>`` when the
    channels of ``<case>`` found among the inputs (or, for a file given alone, beside it) are
    exactly ``0000 .. K-1``; any other file is a case of its own (3D or 4D).

    Raises:
        DatasetError: an input does not exist or is not an image, a folder holds no images, or
            two inputs give the same case name.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = _image_files(p)
            if not found:
                raise DatasetError(f"{p}: folder holds no images (.nii.gz, .nii, .mha, .nrrd, ...)")
            files.extend(found)
        elif p.is_file():
            if not image_suffix(p):
                raise DatasetError(f"{p}: not an image file (unsupported extension)")
            files.append(p)
        else:
            raise DatasetError(f"{p}: {why_unusable(p, 'input')}")
    groups: dict[tuple[Path, str], dict[int, Path]] = {}
    for f in files:
        m = _CHANNEL.match(strip_suffix(f))
        if m:
            groups.setdefault((f.parent, m["case"]), {})[int(m["channel"])] = f
    for (parent, case), chans in groups.items():  # a lone _0000 file brings its siblings
        if list(chans) == [0]:
            for sib in _image_files(parent):
                sm = _CHANNEL.match(strip_suffix(sib))
                if sm and sm["case"] == case:
                    chans[int(sm["channel"])] = sib
    cases: list[InputCase] = []
    done: set[Path] = set()
    for f in files:
        if f in done:
            continue
        m = _CHANNEL.match(strip_suffix(f))
        chan_map = groups.get((f.parent, m["case"])) if m else None
        if m and chan_map and sorted(chan_map) == list(range(len(chan_map))):
            ordered = [chan_map[k] for k in sorted(chan_map)]
            cases.append(InputCase(m["case"], ordered))
            done.update(ordered)
        else:
            cases.append(InputCase(strip_suffix(f), [f]))
            done.add(f)
    seen: dict[str, InputCase] = {}
    for c in cases:
        if c.name in seen:
            raise DatasetError(
                f"{c.files[0]}: case name {c.name!r} also comes from {seen[c.name].files[0]}; "
                "outputs would overwrite each other"
            )
        seen[c.name] = c
    return cases


def _check_case(case: InputCase, channels: int, modalities: Sequence[str]) -> Geometry:
    total = 0
    first = None
    for f in case.files:
        geometry, n = read_geometry(f)
        reorientation_of(geometry, f)  # a singular affine is refused before any inference
        total += n
        if first is None:
            first = geometry
        elif geometry.shape != first.shape:
            raise DatasetError(
                f"{f}: shape {geometry.shape} differs from {case.files[0]} {first.shape}"
            )
    if total != channels:
        raise DatasetError(
            f"{case.files[0]}: {total} channel(s), but the model was trained on {channels} "
            f"({', '.join(modalities)})"
        )
    assert first is not None
    return first


def predict_bytes(geometry: Geometry, spec: ModelSpec, plan: Plan, tta_mirror: bool) -> float:
    """Estimated peak bytes of predicting one case (checked before anything is read).

    The image on its grid (float32 per channel, plus its reordered copy and the restored
    probabilities: ``C + 1 + K`` values per voxel), the resampled image and the summed, current
    and restored probabilities at the target spacing (``C + 3 K``), and the network's forward
    pass on the sliding-window batch (:func:`nasmed.memory.network_bytes`).
    """
    voxels = float(np.prod(geometry.shape))
    ratio = float(np.prod(np.asarray(geometry.spacing) / np.asarray(plan.target_spacing)))
    c, k = spec.in_channels, spec.out_channels
    arrays = 4 * (voxels * (2 * c + 1 + k) + voxels * ratio * (c + (4 if tta_mirror else 3) * k))
    net = network_bytes(
        spec.patch,
        batch=SW_BATCH,
        in_channels=c,
        num_classes=k,
        width=spec.width,
        training=False,
    )
    return arrays + net


def _read(case: InputCase) -> Image:
    parts = [read_image(f, dtype=np.float32) for f in case.files]
    for part in parts[1:]:
        if not part.geometry.allclose(parts[0].geometry):
            raise DatasetError(f"{part.path}: affine differs from {parts[0].path}")
    array = parts[0].array if len(parts) == 1 else np.concatenate([p.array for p in parts], 0)
    if not np.all(np.isfinite(array)):
        raise DatasetError(f"{case.files[0]}: image holds NaN or infinite values")
    return Image(array, parts[0].geometry, parts[0].path)


def predict_probabilities(
    net: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    array: np.ndarray,
    patch: Sequence[int],
    *,
    device: torch.device,
    overlap: float = 0.5,
    tta_mirror: bool = False,
    sw_batch_size: int = SW_BATCH,
    precision: Precision | None = None,
) -> np.ndarray:
    """Softmax ``(K, x, y, z)`` of a preprocessed ``(C, x, y, z)`` array (sliding window,
    Gaussian blending, optional mirroring over all 8 axis flips), the network run under
    ``precision``'s autocast (default: float16 on CUDA, float32 elsewhere); the softmax and the
    blending are float32."""
    if precision is None:
        precision = Precision(resolve_precision(None, "auto", device), device)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(device)
    flips: list[tuple[int, ...]] = [()]
    if tta_mirror:
        flips = [f for r in range(4) for f in itertools.combinations((2, 3, 4), r)]
    total: torch.Tensor | None = None
    with torch.inference_mode(), precision.autocast():
        for dims in flips:
            inp = torch.flip(x, dims) if dims else x
            logits = sliding_window_inference(
                inp, tuple(patch), sw_batch_size, net, overlap=overlap, mode="gaussian"
            )
            assert isinstance(logits, torch.Tensor)
            prob = torch.softmax(logits.float(), dim=1)
            del logits
            if dims:
                prob = torch.flip(prob, dims)
            if total is None:
                total = prob
            else:
                total += prob
        assert total is not None
        total /= len(flips)
    return total[0].cpu().numpy()


def predict(
    model_dir: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    tta_mirror: bool = False,
    device: str = "auto",
    overlap: float = 0.5,
    progress: bool = True,
    network: Callable[[torch.Tensor], torch.Tensor] | None = None,
    amp: bool | None = None,
    amp_dtype: str = "auto",
) -> list[Path]:
    """Segment ``inputs`` with the trained model in ``model_dir``; write ``OUT_DIR/<case>.nii.gz``.

    Args:
        model_dir: a finished run folder (``model.json`` + ``model.pt``).
        inputs: image files and/or folders of images (MSD or nnU-Net per-channel naming).
        out_dir: the output folder (created; predictions of the same names that this verb
            wrote earlier are replaced atomically; any other existing file is refused, and so
            is a folder that is, holds or lies inside an input or the model).
        tta_mirror: average the softmax over the 8 mirrorings.
        device: torch device.
        overlap: sliding-window overlap (0..1).
        network: evaluate this instead of the run's torch network (e.g. an exported ONNX
            model in onnxruntime, :func:`nasmed.export.runtime.load_backend`); the run folder
            still gives the plan and the patch.
        amp: run the network under autocast (``None``: on with CUDA only, as in training);
            on a CPU with native bfloat16 (:func:`~nasmed.engine.precision.cpu_has_native_bf16`)
            ``amp=True`` is about 2.5x faster (docs/benchmarks.md).
        amp_dtype: ``auto`` (float16 on CUDA, bfloat16 on CPU), ``bf16`` or ``fp16`` (CUDA).

    Returns:
        The written files, in input order.

    Raises:
        RunDirError: not a finished run folder. DatasetError / ImageReadError: an input is
            missing, unreadable, or has another number of channels than the model.
    """
    if not 0 <= overlap < 1:
        raise ConfigError(f"--overlap must be in [0, 1), got {overlap}")
    dev = resolve_device(device)
    precision = Precision(resolve_precision(amp, amp_dtype, dev), dev)
    if network is not None and amp:
        raise ConfigError("--amp runs the torch network under autocast; not with another backend")
    net: nn.Module | Callable[[torch.Tensor], torch.Tensor]
    if network is None:
        spec, module = load_model(model_dir, map_location=dev)
        net = module.to(dev).eval()
    else:
        spec, net = ModelSpec.load(model_dir), network
    plan = spec.load_plan()
    cases = find_inputs(inputs)
    for case in cases:  # check everything before writing anything
        geometry = _check_case(case, spec.in_channels, plan.modalities)
        check_memory(
            predict_bytes(geometry, spec, plan, tta_mirror),
            f"{case.files[0]}: predicting {'x'.join(map(str, geometry.shape))} voxels",
            "predict on a machine with more memory, or crop the image",
            device=str(dev),
        )
    kept: dict[str, Image] = {}  # images read by the check, kept up to READ_KEEP_BYTES
    if len(cases) > 1:  # a batch: read every voxel first, so a bad later case writes nothing
        held = 0
        for case in tqdm(cases, desc="check inputs", unit="case", disable=not progress):
            image = _read(case)
            held += image.array.nbytes
            if held <= READ_KEEP_BYTES:
                kept[case.name] = image
    targets = [Path(out_dir) / f"{case.name}.nii.gz" for case in cases]
    check_separate(out_dir, [model_dir, *inputs, *(f for c in cases for f in c.files)])
    check_outside_datasets(out_dir, inputs)
    check_files(targets, VERB)
    out = ensure_out_dir(out_dir)
    record_files(targets, VERB)
    native = network is None and dev.type == "cpu" and cpu_has_native_bf16()
    if not precision.enabled and amp is None and native:
        log.info("this CPU computes bfloat16 natively: --amp predicts about 2.5x faster")
    written: list[Path] = []
    for case in tqdm(cases, desc="predict", unit="case", disable=not progress):
        found = kept.pop(case.name, None)
        image = found if found is not None else _read(case)
        pre = preprocess_case(image, None, plan)
        prob = predict_probabilities(
            net,
            pre.array,
            spec.patch,
            device=dev,
            overlap=overlap,
            tta_mirror=tta_mirror,
            precision=precision,
        )
        back = restore_to_original(prob, pre.properties, is_label=False)
        seg = np.argmax(back, axis=0).astype(np.uint8 if spec.out_channels <= 256 else np.int16)
        seg = apply_saved(model_dir, seg)  # the run's largest-component postprocessing, if any
        path = write_image(out / f"{case.name}.nii.gz", seg, image.geometry)
        written.append(path)
        log.info("%s -> %s", case.files[0], path)
    return written
