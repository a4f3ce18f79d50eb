"""``nasmed preprocess``: writes the work folder and prints the plan; bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from decathlon.synthetic import write_synthetic_task
from nasmed.cli.main import main


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_task(tmp_path_factory.mktemp("cli") / "task", cases=3, test_cases=1)


def test_preprocess_writes_work_dir(
    task_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    assert main(["preprocess", str(task_dir), "--out", str(work), "--folds", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "target spacing" in out and "patch size" in out and "normalisation" in out
    assert (work / "plan.json").is_file() and (work / "splits.json").is_file()
    assert len(list((work / "cache").glob("*.npy"))) == 9  # image, seg, fg per case
    assert (
        main(
            [
                "preprocess",
                str(task_dir),
                "--out",
                str(work),
                "--folds",
                "3",
                "--patch",
                "32",
                "32",
                "16",
                "-q",
            ]
        )
        == 0
    )
    assert "32 x 32 x 16" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--folds", "9"], "too few for 9 folds"),
        (["--patch", "20", "32", "32"], "multiples of 16"),
    ],
)
def test_bad_settings_exit_2(
    task_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], match: str
) -> None:
    work = tmp_path / "work"
    assert main(["preprocess", str(task_dir), "--out", str(work), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not work.exists()


def test_output_is_a_file_or_task_invalid(
    task_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep")
    assert main(["preprocess", str(task_dir), "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert afile.read_text() == "keep"
    work = tmp_path / "work"
    assert main(["preprocess", str(tmp_path / "missing"), "--out", str(work)]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing" in err and len(err.splitlines()) == 1
    assert not work.exists()
