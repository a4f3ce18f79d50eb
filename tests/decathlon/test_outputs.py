"""The output rule (decathlon.outputs): never overwrite what the verb did not write, never write
into or over the inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from decathlon.outputs import (
    LEDGER,
    OutputError,
    check_dir,
    check_files,
    check_separate,
    claim_dir,
    record_files,
)


def test_check_separate_refuses_is_contains_and_inside(tmp_path: Path) -> None:
    task = tmp_path / "task"
    (task / "imagesTs").mkdir(parents=True)
    image = task / "imagesTs" / "a.nii.gz"
    image.write_bytes(b"x")
    with pytest.raises(OutputError, match="--out is the input"):
        check_separate(task / "imagesTs", [task / "imagesTs"])
    with pytest.raises(OutputError, match="--out contains the input"):
        check_separate(tmp_path, [image])
    with pytest.raises(OutputError, match="--png is inside the input"):
        check_separate(task / "imagesTs" / "pred", [task], option="--png")
    with pytest.raises(OutputError, match="is the input"):
        check_separate(image, [image])
    check_separate(tmp_path / "out", [task, None])  # apart: fine


def test_check_separate_resolves_symlinks(tmp_path: Path) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (tmp_path / "alias").symlink_to(task)
    with pytest.raises(OutputError, match="is inside the input"):
        check_separate(tmp_path / "alias" / "out", [task])


def test_claim_dir_accepts_new_empty_and_own_folders(tmp_path: Path) -> None:
    work = claim_dir(tmp_path / "work", "preprocess", key="/data/T1")
    (work / "plan.json").write_text("{}")
    assert claim_dir(work, "preprocess", key="/data/T1") == work  # a re-run
    with pytest.raises(OutputError, match="for /data/T1, not /data/T2"):
        check_dir(work, "preprocess", key="/data/T2")
    with pytest.raises(OutputError, match="written by nasmed preprocess, not by nasmed demo"):
        check_dir(work, "demo")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="something other than nasmed"):
        claim_dir(foreign, "demo")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_dir(tmp_path / "file", "demo")


def test_files_are_replaced_only_when_the_verb_wrote_them(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    theirs.write_text("reference")
    check_files([mine], "predict")
    record_files([mine], "predict")
    mine.write_text("prediction")
    check_files([mine], "predict")  # a second predict may replace its own
    with pytest.raises(OutputError, match="not written by nasmed evaluate"):
        check_files([mine], "evaluate")
    with pytest.raises(OutputError, match=r"b\.nii\.gz: exists and was not written"):
        check_files([mine, theirs], "predict")
    (tmp_path / "sub").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_files([tmp_path / "sub"], "predict")
    assert (tmp_path / LEDGER).is_file() and theirs.read_text() == "reference"
