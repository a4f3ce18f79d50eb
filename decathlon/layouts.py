"""The two task layouts: parse an MSD or nnU-Net v2 raw ``dataset.json`` into case lists.

:func:`decathlon.datalist.load_task` picks the layout and builds the typed
:class:`~decathlon.datalist.Task` from what these parsers return; every problem is a
:class:`~decathlon.errors.DatasetError` naming ``dataset.json`` and the field.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decathlon.errors import DatasetError
from decathlon.io import image_suffix, strip_suffix

__all__ = ["Case", "is_debris", "parse_msd", "parse_nnunet", "read_dataset_json"]

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def is_debris(path: str | os.PathLike[str]) -> bool:
    """True for macOS resource-fork debris (``._name``) and other hidden files."""
    return Path(path).name.startswith(".")


@dataclass(frozen=True)
class Case:
    """One case of a task.

    Args:
        name: the case id (``"spleen_12"``): the file name without its suffix (and, for nnU-Net
            raw folders, without the ``_0000`` channel index).
        images: the image files; one for MSD (3D, or 4D with channels last), one per channel for
            nnU-Net raw folders.
        label: the label file, ``None`` for test cases.
    """

    name: str
    images: tuple[Path, ...]
    label: Path | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file of the case: the images, then the label if any."""
        return self.images + ((self.label,) if self.label is not None else ())


def read_dataset_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing dataset.json; is {path.parent} a task folder?")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"
        ) from exc
    except RecursionError:
        raise DatasetError(f"{path}: nested too deeply to be a dataset.json") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level must be a JSON object, not {type(data).__name__}")
    return data


def _require(data: dict[str, Any], key: str, path: Path, what: str) -> Any:
    if key not in data:
        raise DatasetError(f"{path}: missing required field {key!r} ({what})")
    return data[key]


def _int_key(key: Any, path: Path, fieldname: str) -> int:
    try:
        value = int(str(key).strip())
    except ValueError:
        raise DatasetError(
            f"{path}: field {fieldname!r} has key {key!r}; keys must be integers"
        ) from None
    if value < 0:
        raise DatasetError(f"{path}: field {fieldname!r} has negative key {key!r}")
    return value


def _parse_modalities(raw: Any, path: Path, fieldname: str) -> tuple[str, ...]:
    if isinstance(raw, list):
        names = [str(v) for v in raw]
    elif isinstance(raw, dict):
        indexed = {_int_key(k, path, fieldname): str(v) for k, v in raw.items()}
        if sorted(indexed) != list(range(len(indexed))):
            raise DatasetError(
                f"{path}: field {fieldname!r} keys {sorted(indexed)} must be 0..{len(indexed) - 1}"
            )
        names = [indexed[i] for i in range(len(indexed))]
    else:
        raise DatasetError(f'{path}: field {fieldname!r} must be an object such as {{"0": "CT"}}')
    if not names:
        raise DatasetError(f"{path}: field {fieldname!r} is empty; declare at least one channel")
    return tuple(names)


def _check_label_map(labels: dict[int, str], path: Path) -> dict[int, str]:
    values = sorted(labels)
    if not values or values[0] != 0:
        raise DatasetError(f"{path}: field 'labels' must declare 0 (background)")
    if values != list(range(len(values))):
        raise DatasetError(
            f"{path}: field 'labels' values {values} must be consecutive 0..{len(values) - 1}"
        )
    if len(values) < 2:
        raise DatasetError(f"{path}: field 'labels' declares no foreground class")
    return {v: labels[v] for v in values}


def _parse_msd_labels(raw: Any, path: Path) -> dict[int, str]:
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: field 'labels' must be an object such as {{\"0\": ...}}")
    return _check_label_map({_int_key(k, path, "labels"): str(v) for k, v in raw.items()}, path)


def _parse_nnunet_labels(raw: Any, path: Path) -> dict[int, str]:
    if not isinstance(raw, dict):
        raise DatasetError(
            f"{path}: field 'labels' must be an object such as {{\"background\": 0, ...}}"
        )
    labels: dict[int, str] = {}
    for name, value in raw.items():
        if isinstance(value, list | tuple):
            raise DatasetError(
                f"{path}: field 'labels' entry {name!r} is a region (list of labels); "
                "region-based labels are not supported"
            )
        try:
            v = int(value)
        except (TypeError, ValueError):
            raise DatasetError(
                f"{path}: field 'labels' entry {name!r} must be an integer, not {value!r}"
            ) from None
        if v in labels:
            raise DatasetError(f"{path}: field 'labels' declares value {v} twice")
        labels[v] = str(name)
    return _check_label_map(labels, path)


def _resolve(root: Path, entry: Any, path: Path, where: str) -> Path:
    if not isinstance(entry, str) or not entry.strip():
        raise DatasetError(f"{path}: {where} must be a file path string, not {entry!r}")
    rel = entry.strip()
    while rel.startswith("./"):
        rel = rel[2:]
    p = Path(rel)
    return p if p.is_absolute() else root / p


def _parse_msd_cases(
    root: Path, raw: Any, path: Path, fieldname: str, with_label: bool
) -> list[Case]:
    if not isinstance(raw, list):
        raise DatasetError(f"{path}: field {fieldname!r} must be a list")
    cases: list[Case] = []
    for i, entry in enumerate(raw):
        where = f"{fieldname}[{i}]"
        label: Path | None = None
        if isinstance(entry, dict):
            image = _resolve(
                root,
                _require(entry, "image", path, f"{where} needs an image"),
                path,
                f"{where}.image",
            )
            if with_label:
                label = _resolve(
                    root,
                    _require(entry, "label", path, f"{where} needs a label"),
                    path,
                    f"{where}.label",
                )
        elif isinstance(entry, str) and not with_label:
            image = _resolve(root, entry, path, where)
        else:
            shape = '{"image": ..., "label": ...}' if with_label else '"./imagesTs/x.nii.gz"'
            raise DatasetError(f"{path}: {where} must look like {shape}, not {entry!r}")
        if is_debris(image):
            continue
        cases.append(Case(strip_suffix(image), (image,), label))
    return cases


def parse_msd(root: Path, data: dict[str, Any], path: Path) -> dict[str, Any]:
    modalities = _parse_modalities(
        _require(data, "modality", path, 'channel names such as {"0": "CT"}'), path, "modality"
    )
    labels = _parse_msd_labels(
        _require(data, "labels", path, 'such as {"0": "background", "1": "spleen"}'), path
    )
    training = _parse_msd_cases(
        root,
        _require(data, "training", path, "the list of training cases"),
        path,
        "training",
        with_label=True,
    )
    test = _parse_msd_cases(root, data.get("test", []), path, "test", with_label=False)
    tis = data.get("tensorImageSize", "4D" if len(modalities) > 1 else "3D")
    tis = str(tis).strip().upper()
    if tis not in ("3D", "4D"):
        raise DatasetError(
            f"{path}: field 'tensorImageSize' is {data.get('tensorImageSize')!r}; "
            'expected "3D" or "4D"'
        )
    return {
        "modalities": modalities,
        "labels": labels,
        "training": training,
        "test": test,
        "layout": "msd",
        "tensor_image_size": tis,
    }


def _scan_channels(folder: Path, ending: str, num_channels: int, path: Path) -> list[Case]:
    if not folder.is_dir():
        return []
    groups: dict[str, dict[int, Path]] = {}
    for f in sorted(folder.iterdir()):
        if is_debris(f) or not f.name.endswith(ending):
            continue
        m = _CHANNEL_RE.match(f.name[: -len(ending)])
        if m is None:
            raise DatasetError(
                f"{f}: nnU-Net raw image names must end in _XXXX{ending} (the channel index)"
            )
        groups.setdefault(m["case"], {})[int(m["channel"])] = f
    cases = []
    for name, channels in sorted(groups.items()):
        images = []
        for c in range(num_channels):
            if c not in channels:
                raise DatasetError(
                    f"{folder / f'{name}_{c:04d}{ending}'}: missing channel {c} of case {name!r} "
                    f"({path} declares {num_channels} channels)"
                )
            images.append(channels[c])
        extra = sorted(set(channels) - set(range(num_channels)))
        if extra:
            raise DatasetError(
                f"{channels[extra[0]]}: channel {extra[0]} of case {name!r} is not declared in "
                f"{path} 'channel_names' ({num_channels} channels)"
            )
        cases.append(Case(name, tuple(images), None))
    return cases


def parse_nnunet(root: Path, data: dict[str, Any], path: Path) -> dict[str, Any]:
    modalities = _parse_modalities(
        _require(data, "channel_names", path, 'such as {"0": "CT"}'), path, "channel_names"
    )
    labels = _parse_nnunet_labels(
        _require(data, "labels", path, 'such as {"background": 0, "spleen": 1}'), path
    )
    ending = str(_require(data, "file_ending", path, 'such as ".nii.gz"'))
    if not image_suffix(f"x{ending}") or image_suffix(f"x{ending}") != ending.lower():
        raise DatasetError(f"{path}: field 'file_ending' {ending!r} is not a supported format")
    if "dataset" in data:
        raise DatasetError(
            f"{path}: field 'dataset' (explicit case lists) is not supported; "
            "put the cases in imagesTr/ and labelsTr/"
        )
    training = []
    for case in _scan_channels(root / "imagesTr", ending, len(modalities), path):
        training.append(Case(case.name, case.images, root / "labelsTr" / f"{case.name}{ending}"))
    test = _scan_channels(root / "imagesTs", ending, len(modalities), path)
    return {
        "modalities": modalities,
        "labels": labels,
        "training": training,
        "test": test,
        "layout": "nnunet",
        "tensor_image_size": "3D",
        "file_ending": ending,
    }
