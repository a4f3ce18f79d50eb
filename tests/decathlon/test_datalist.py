"""decathlon.datalist and decathlon.tasks: dataset.json parsing, quirks, nnU-Net raw, read_case."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from decathlon.datalist import Case, load_task, read_case
from decathlon.errors import DatasetError, DecathlonError
from decathlon.io import Geometry, write_image
from decathlon.tasks import MSD_TASKS, msd_task
from decathlon.testing import (
    BAD_INPUTS,
    SHAPE,
    bad_task,
    case_arrays,
    lps_geometry,
    read_json,
    write_json,
    write_task,
)


def test_load_task_parses_msd(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "Tiny"))
    assert task.name == "Tiny"
    assert task.layout == "msd"
    assert task.tensor_image_size == "3D"
    assert task.modalities == ("CT",)
    assert task.labels == {0: "background", 1: "organ", 2: "lesion"}
    assert (task.num_channels, task.num_classes, task.foreground_labels) == (1, 3, (1, 2))
    assert [c.name for c in task.training] == ["case_0", "case_1"]
    assert [c.name for c in task.test] == ["case_99"]
    case = task.case("case_1")
    assert case.images == (tmp_path / "Tiny" / "imagesTr" / "case_1.nii.gz",)
    assert case.label == tmp_path / "Tiny" / "labelsTr" / "case_1.nii.gz"
    assert task.case("case_99").label is None
    assert task.warnings == ()
    with pytest.raises(DatasetError, match="no case named 'nope'"):
        task.case("nope")


def test_read_case(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "Tiny"))
    image, label = read_case(task.case("case_0"), num_channels=1, labels=task.labels)
    want_image, want_label = case_arrays(0)
    assert image.array.dtype == np.float32 and image.array.shape == (1, *SHAPE)
    np.testing.assert_allclose(image.array[0], want_image)
    assert label is not None
    assert label.array.dtype == np.uint8 and label.array.shape == (1, *SHAPE)
    np.testing.assert_array_equal(label.array[0], want_label)
    assert image.geometry.allclose(lps_geometry())
    test_image, no_label = read_case(task.case("case_99"))
    assert no_label is None and test_image.channels == 1


def test_quirks_of_official_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_task(tmp_path / "Task09_Spleen")
    data = read_json(root / "dataset.json")
    data["relase"] = "1.0 04/05/2018"
    data["labels"] = {"0": "background", "1": "spleen"}
    data["numTraining"] = 5  # disagrees with the list: a warning, not an error
    # MSD test as a list of {"image": ...} objects, with debris entries and files
    data["test"] = [
        {"image": "./imagesTs/case_99.nii.gz"},
        {"image": "./imagesTs/._case_99.nii.gz"},
    ]
    data["training"].append(
        {"image": "./imagesTr/._case_0.nii.gz", "label": "./labelsTr/._case_0.nii.gz"}
    )
    (root / "imagesTr" / "._case_0.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    write_json(root / "dataset.json", data)
    for f in (root / "labelsTr").glob("*.nii.gz"):  # labels 0/1 only for the "spleen" task
        write_image(f, (case_arrays(0)[1] > 0).astype(np.uint8), lps_geometry())
    with caplog.at_level(logging.WARNING):
        task = load_task(root)
    assert [c.name for c in task.training] == ["case_0", "case_1"]
    assert [c.name for c in task.test] == ["case_99"]
    assert task.metadata["release"] == "1.0 04/05/2018"
    assert any("numTraining" in w and "says 5" in w for w in task.warnings)
    assert "numTraining" in caplog.text
    assert task.msd is msd_task("Spleen")


def test_test_as_list_of_strings_without_prefix(tmp_path: Path) -> None:
    root = write_task(tmp_path / "t", dataset={"test": ["imagesTs/case_99.nii.gz"]})
    task = load_task(root)
    assert task.test[0].images == (root / "imagesTs" / "case_99.nii.gz",)


def test_msd_file_with_a_file_ending_stays_msd(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "t", dataset={"file_ending": ".nii.gz"}))
    assert task.layout == "msd" and len(task.training) == 2


def test_four_d_task(tmp_path: Path) -> None:
    root = tmp_path / "Task05_Prostate"
    geometry = lps_geometry()
    image, label = case_arrays(0)
    write_image(root / "imagesTr" / "prostate_00.nii.gz", np.stack([image, -image]), geometry)
    write_image(root / "labelsTr" / "prostate_00.nii.gz", label, geometry)
    write_json(
        root / "dataset.json",
        {
            "name": "PROSTATE",
            "tensorImageSize": "4D",
            "modality": {"0": "T2", "1": "ADC"},
            "labels": {"0": "background", "1": "PZ", "2": "TZ"},
            "training": [
                {"image": "./imagesTr/prostate_00.nii.gz", "label": "./labelsTr/prostate_00.nii.gz"}
            ],
            "test": [],
        },
    )
    task = load_task(root)
    assert task.tensor_image_size == "4D" and task.num_channels == 2
    assert task.msd is not None and task.msd.name == "Prostate" and task.warnings == ()
    img, lab = read_case(task.training[0], num_channels=2, labels=task.labels)
    assert lab is not None
    np.testing.assert_allclose(img.array[1], -image)
    with pytest.raises(DatasetError, match=r"2 channels but dataset\.json declares 1"):
        read_case(task.training[0], num_channels=1)


def test_label_mismatch_with_msd_metadata_warns(tmp_path: Path) -> None:
    root = write_task(tmp_path / "Task09_Spleen")  # declares 2 foreground labels, Spleen has 1
    task = load_task(root)
    assert task.msd is not None and task.msd.id == 9
    assert any("differ from MSD Task09_Spleen" in w for w in task.warnings)


def _write_nnunet(root: Path, cases: int = 2, channels: int = 2) -> Path:
    geometry = lps_geometry()
    for i in range(cases):
        image, label = case_arrays(i)
        for c in range(channels):
            write_image(root / "imagesTr" / f"BRATS_{i:03d}_{c:04d}.nii.gz", image + c, geometry)
        write_image(root / "labelsTr" / f"BRATS_{i:03d}.nii.gz", label, geometry)
    image, _ = case_arrays(9)
    for c in range(channels):
        write_image(root / "imagesTs" / f"BRATS_900_{c:04d}.nii.gz", image, geometry)
    (root / "imagesTr" / "._BRATS_000_0000.nii.gz").write_bytes(b"\x00\x05")
    write_json(
        root / "dataset.json",
        {
            "channel_names": {str(c): f"mod{c}" for c in range(channels)},
            "labels": {"background": 0, "edema": 1, "tumour": 2},
            "numTraining": cases,
            "file_ending": ".nii.gz",
        },
    )
    return root


def test_nnunet_raw_folder(tmp_path: Path) -> None:
    root = _write_nnunet(tmp_path / "Dataset001_Toy")
    task = load_task(root)
    assert task.layout == "nnunet"
    assert task.name == "Dataset001_Toy"
    assert task.modalities == ("mod0", "mod1")
    assert task.labels == {0: "background", 1: "edema", 2: "tumour"}
    assert [c.name for c in task.training] == ["BRATS_000", "BRATS_001"]
    assert [c.name for c in task.test] == ["BRATS_900"]
    case = task.training[1]
    assert [p.name for p in case.images] == ["BRATS_001_0000.nii.gz", "BRATS_001_0001.nii.gz"]
    image, label = read_case(case, num_channels=2, labels=task.labels)
    assert image.array.shape == (2, *SHAPE)
    np.testing.assert_allclose(image.array[1] - image.array[0], 1.0, atol=1e-4)
    assert label is not None and label.array.max() == 2


def test_nnunet_missing_channel(tmp_path: Path) -> None:
    root = _write_nnunet(tmp_path / "Dataset001_Toy")
    (root / "imagesTr" / "BRATS_001_0001.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"BRATS_001_0001\.nii\.gz: missing channel 1"):
        load_task(root)


def test_nnunet_channel_geometries_must_agree(tmp_path: Path) -> None:
    root = _write_nnunet(tmp_path / "Dataset001_Toy")
    shifted = lps_geometry().affine.copy()
    shifted[2, 3] += 5.0
    f = root / "imagesTr" / "BRATS_000_0001.nii.gz"
    write_image(f, case_arrays(0)[0], Geometry(shifted, SHAPE))
    task = load_task(root)
    with pytest.raises(DatasetError, match="affine differs") as exc:
        read_case(task.training[0])
    assert str(f) in str(exc.value)


def test_nnunet_region_labels_rejected(tmp_path: Path) -> None:
    root = _write_nnunet(tmp_path / "Dataset001_Toy")
    data = read_json(root / "dataset.json")
    data["labels"]["whole tumour"] = [1, 2]
    write_json(root / "dataset.json", data)
    with pytest.raises(DatasetError, match="region"):
        load_task(root)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"modality": None}, "'modality'"),
        ({"training": None}, "'training'"),
        ({"labels": {"0": "background", "2": "x"}}, "consecutive"),
        ({"labels": {"1": "x", "2": "y"}}, "must declare 0"),
        ({"labels": {"0": "background"}}, "no foreground"),
        ({"labels": {"zero": "background"}}, "keys must be integers"),
        ({"modality": {"1": "CT"}}, "'modality' keys"),
        ({"tensorImageSize": "5D"}, "tensorImageSize"),
        ({"training": [{"image": "./imagesTr/case_0.nii.gz"}]}, "training[0] needs a label"),
        ({"training": ["./imagesTr/case_0.nii.gz"]}, "training[0] must look like"),
        ({"training": []}, "no training cases"),
    ],
)
def test_schema_errors_name_dataset_json_and_field(
    tmp_path: Path, change: dict[str, object], words: str
) -> None:
    root = write_task(tmp_path / "t")
    data = read_json(root / "dataset.json")
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    write_json(root / "dataset.json", data)
    with pytest.raises(DatasetError) as exc:
        load_task(root)
    message = str(exc.value)
    assert str(root / "dataset.json") in message and words in message, message


def test_task_folder_that_is_missing_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_task(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        load_task(tmp_path / "file")


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"\xff\xfe{}", "cannot read"), (b"[" * 200_000 + b"]" * 200_000, "nested too deeply")],
)
def test_dataset_json_not_utf8_or_nested_too_deeply(
    tmp_path: Path, content: bytes, words: str
) -> None:
    (tmp_path / "dataset.json").write_bytes(content)
    with pytest.raises(DatasetError, match=words) as exc:
        load_task(tmp_path)
    assert "dataset.json" in str(exc.value) and "\n" not in str(exc.value)


# Every bad input fails load_task or read_case with one line naming the file.
@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_raises_one_line_naming_the_file(tmp_path: Path, kind: str) -> None:
    root, where, words = bad_task(tmp_path / "t", kind)
    with pytest.raises(DecathlonError) as exc:
        task = load_task(root)
        for case in task.training:
            read_case(case, num_channels=task.num_channels, labels=task.labels)
    message = str(exc.value)
    assert where in message and words in message, message
    assert "\n" not in message


def test_read_case_label_dtype_for_large_values(tmp_path: Path) -> None:
    geometry = lps_geometry()
    write_image(tmp_path / "i.nii.gz", np.zeros(SHAPE, np.float32), geometry)
    write_image(tmp_path / "l.nii.gz", np.full(SHAPE, 300, np.int16), geometry)
    _, label = read_case(Case("c", (tmp_path / "i.nii.gz",), tmp_path / "l.nii.gz"))
    assert label is not None and label.array.dtype == np.int32 and label.array.max() == 300


@pytest.mark.parametrize(
    "name", ["Task09_Spleen", "Spleen", "spleen", "09", "9", "task9", "/data/Task09_Spleen/"]
)
def test_msd_task_recognised(name: str) -> None:
    task = msd_task(name)
    assert task is not None and task.name == "Spleen" and task.folder == "Task09_Spleen"


def test_msd_task_unknown_names() -> None:
    assert msd_task("Task09_Liver") is None
    assert msd_task("Task11_Foo") is None
    assert msd_task("Synthetic") is None
    assert msd_task(0) is None


def test_msd_table() -> None:
    assert [t.id for t in MSD_TASKS] == list(range(1, 11))
    brain = msd_task(1)
    assert brain is not None and brain.modalities == ("FLAIR", "T1w", "t1gd", "T2w")
    assert brain.num_classes == 4 and (brain.num_training, brain.num_test) == (484, 266)
    assert msd_task("HepaticVessel") == msd_task("Task08_HepaticVessel")
    for t in MSD_TASKS:
        assert msd_task(t.folder) is t and msd_task(t.name.lower()) is t
        assert t.label_map[0] == "background" and len(t.label_map) == t.num_classes


# ---- containment: dataset.json paths stay inside the task folder ---------------------------


def _point_outside(root: Path, tmp_path: Path, how: str) -> Path:
    import json
    import shutil

    outside = tmp_path / "elsewhere"
    outside.mkdir(exist_ok=True)
    src = root / "imagesTr" / "case_0.nii.gz"
    moved = outside / "case_0.nii.gz"
    shutil.move(src, moved)
    data = json.loads((root / "dataset.json").read_text())
    if how == "absolute":
        data["training"][0]["image"] = str(moved)
    elif how == "dotdot":
        data["training"][0]["image"] = "../elsewhere/case_0.nii.gz"
    else:  # a symlink inside the folder that leads out of it
        src.symlink_to(moved)
    (root / "dataset.json").write_text(json.dumps(data))
    return moved


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_paths_outside_the_task_folder_are_refused_unless_allowed(tmp_path: Path, how: str) -> None:
    from decathlon.datalist import outside_paths_allowed
    from decathlon.testing import write_task
    from decathlon.validate import validate_task

    root = write_task(tmp_path / "task", cases=2)
    _point_outside(root, tmp_path, how)
    with pytest.raises(DatasetError, match=r"outside the task folder.*--allow-outside-paths"):
        load_task(root)
    report = validate_task(root)
    assert not report.ok and "outside the task folder" in report.problems[0]
    task = load_task(root, allow_outside_paths=True)
    assert [f.name for f in task.outside_files] == ["case_0.nii.gz"]
    with outside_paths_allowed():
        assert len(load_task(root).outside_files) == 1
    with pytest.raises(DatasetError, match="outside"):
        load_task(root)  # the context ended
    summary = validate_task(root, allow_outside_paths=True).summary
    assert summary is not None and summary.outside_files == 1
    assert "1 case file(s) outside the task folder" in summary.table()
