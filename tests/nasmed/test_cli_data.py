"""``nasmed synth`` and ``nasmed inspect``: exit codes, output, and every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from decathlon.testing import BAD_INPUTS, bad_task, write_task
from nasmed.cli.main import main

TINY = ["--cases", "2", "--test-cases", "1", "--shape", "16", "16", "8"]


def test_synth_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "Task99_Synth"
    assert main(["synth", str(out), *TINY, "--classes", "3", "--modalities", "2", "-q"]) == 0
    assert (out / "dataset.json").is_file()
    assert main(["inspect", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 training, 1 test" in captured.out
    assert "label 3 (lesion)" in captured.out
    assert "modalities" in captured.out and "T2w" in captured.out
    assert "spacing median (mm)" in captured.out and "size median" in captured.out
    assert captured.err == ""


def test_synth_seed_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["synth", str(tmp_path / name), *TINY, "--seed", "5", "-q"]) == 0
    for f in (tmp_path / "a").rglob("*.nii.gz"):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


def test_synth_into_a_file_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    assert main(["synth", str(target), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0] and "is a file" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_synth_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path / "t"), *TINY, "--modalities", "9"]) == 2
    assert "modalities" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_inspect_bad_input_exit_2(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, where, words = bad_task(tmp_path / "t", kind)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert main(["inspect", str(root)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = [x for x in captured.err.strip().splitlines() if not x.startswith("warning:")]
    assert lines[0].startswith("nasmed inspect: error:") and "problem" in lines[0]
    assert any(where in line and words in line for line in lines[1:]), lines
    assert captured.out == ""
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written


def test_inspect_lists_every_problem_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_task(tmp_path / "t", cases=3, dataset={"numTraining": 9})
    (root / "imagesTr" / "case_0.nii.gz").unlink()
    (root / "labelsTr" / "case_2.nii.gz").write_bytes(b"junk")
    assert main(["inspect", str(root), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "2 problems found" in err[-3]
    assert err[-2].endswith("listed in " + str(root / "dataset.json") + ")")
    assert "case_2.nii.gz: cannot read" in err[-1]
    assert any(line.startswith("warning:") and "numTraining" in line for line in err)


def test_console_script_has_no_traceback(tmp_path: Path) -> None:
    root, _, _ = bad_task(tmp_path / "t", "truncated_nifti")
    proc = subprocess.run(
        [sys.executable, "-m", "nasmed", "inspect", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "truncated" in proc.stderr


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_inspect_path_that_is_not_a_task_folder(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "task"
    if kind == "file":
        target.write_text("x")
    assert main(["inspect", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and str(target) in err[1]
    assert ("does not exist" if kind == "missing" else "not a folder") in err[1]


def test_inspect_outside_paths_only_with_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    task = write_task(tmp_path / "task", cases=2)
    elsewhere = tmp_path / "elsewhere.nii.gz"
    (task / "imagesTr" / "case_1.nii.gz").rename(elsewhere)
    data = json.loads((task / "dataset.json").read_text())
    data["training"][1]["image"] = str(elsewhere)
    (task / "dataset.json").write_text(json.dumps(data))
    assert main(["inspect", str(task)]) == 2
    assert "outside the task folder" in capsys.readouterr().err
    assert main(["inspect", str(task), "--allow-outside-paths"]) == 0
    out = capsys.readouterr().out
    assert "outside paths" in out and "1 case file(s) outside the task folder" in out
