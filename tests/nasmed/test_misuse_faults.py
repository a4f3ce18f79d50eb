"""Misuse and fault battery: every case ends in exit 2, one stderr line, no traceback, and no file
that existed before is changed.

The CLI runs in-process (:func:`nasmed.cli.main.main`). A read-only folder is simulated by
refusing, with ``EROFS``, every open-for-writing and mkdir under it (the tests run as root in
places, where ``chmod`` protects nothing); a full disk by a short write, as numpy reports it.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

from decathlon.synthetic import write_synthetic_task
from nasmed.cli.main import main
from nasmed.testing import write_fixed_model

# --- harness --------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("misuse")


@pytest.fixture(scope="module")
def task(base: Path) -> Path:
    return write_synthetic_task(
        base / "T", cases=4, shape=(24, 24, 16), classes=1, test_cases=1, name="Misuse"
    )


@pytest.fixture(scope="module")
def model(base: Path) -> Path:
    return write_fixed_model(base / "model")


@pytest.fixture()
def fail(
    base: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., str]:
    """``fail(*argv)``: run the CLI, assert the contract, return the error line."""
    monkeypatch.setenv("NASMED_CACHE", str(base / "cache"))

    def run(*argv: str, match: str | None = None) -> str:
        capsys.readouterr()
        before = _tree(base)
        rc = main([*argv, "-q"])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2, (rc, err)
        assert len(lines) == 1, err
        assert "Traceback" not in err
        after = _tree(base)
        changed = [p for p, h in before.items() if after.get(p) != h]
        assert not changed, changed
        assert lines[0].startswith("nasmed ") and ": error: " in lines[0]
        if match is not None:
            assert match in lines[0], lines[0]
        return lines[0]

    return run


@pytest.fixture()
def readonly(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], Path]:
    """``readonly(folder)``: writes and mkdirs under ``folder`` fail with EROFS."""
    roots: list[str] = []

    def under(p: Any) -> bool:
        if not isinstance(p, (str, bytes, os.PathLike)):
            return False
        path = os.path.abspath(os.fsdecode(p))
        return any(path == r or path.startswith(r + os.sep) for r in roots)

    def refuse(p: Any) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(p))

    real_os_open, real_mkdir, real_open = os.open, os.mkdir, builtins.open

    def os_open(path: Any, flags: int, *a: Any, **k: Any) -> int:
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise refuse(path)
        return real_os_open(path, flags, *a, **k)

    def mkdir(path: Any, *a: Any, **k: Any) -> None:
        if under(path):
            raise refuse(path)
        real_mkdir(path, *a, **k)

    def open_(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        if under(file) and any(c in mode for c in "wax+"):
            raise refuse(file)
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        roots.append(os.path.abspath(folder))
        return folder

    return make


def _label_copy(task: Path, dest: Path, value: float) -> Path:
    src = task / "labelsTr" / "synth_000.nii.gz"
    img = nib.load(src)
    data = np.asarray(img.dataobj).astype(np.float32)
    data[0, 0, 0] = value
    dest.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, img.affine), dest / "synth_000.nii.gz")
    return dest


@pytest.fixture(scope="module")
def ref(task: Path, base: Path) -> Path:
    out = base / "ref"
    out.mkdir()
    shutil.copy(task / "labelsTr" / "synth_000.nii.gz", out / "synth_000.nii.gz")
    return out


# --- evaluate: values that are not labels ---------------------------------------------------


@pytest.mark.parametrize("value", [-1.0, float("nan"), 0.5, 7.0, 1e6])
def test_evaluate_refuses_values_that_are_not_labels(
    fail: Callable[..., str], task: Path, ref: Path, base: Path, value: float
) -> None:
    pred = _label_copy(task, base / f"pred_{value}", value)
    line = fail("evaluate", "--pred", str(pred), "--ref", str(ref))
    assert str(pred / "synth_000.nii.gz") in line
    assert not (pred / "metrics.json").exists()


def test_evaluate_out_below_a_file(
    fail: Callable[..., str], task: Path, ref: Path, base: Path
) -> None:
    pred = _label_copy(task, base / "pred_ok", 0.0)
    somefile = base / "somefile"
    somefile.write_text("x")
    fail("evaluate", "--pred", str(pred), "--ref", str(ref), "--out", f"{somefile}/m.json",
         match=f"{somefile}: ")  # fmt: skip


# --- read-only output folders, every verb ----------------------------------------------------


def _ro_cases(task: Path, model: Path, ro: Path) -> dict[str, list[str]]:
    return {
        "synth": ["synth", str(ro / "t"), "--cases", "2", "--shape", "8", "8", "8"],
        "preprocess": ["preprocess", str(task), "--out", str(ro / "w"), "--folds", "2"],
        "train": ["train", str(task), "--arch", "unet", "--out", str(ro / "r"), "--epochs", "1",
                  "--folds", "4"],
        "search": ["search", str(task), "--out", str(ro / "s"), "--epochs", "1"],
        "transfer": ["transfer", "--arch", "unet", str(task), "--out", str(ro / "x"),
                     "--folds", "4"],
        "predict": ["predict", "--model", str(model), str(task / "imagesTs"),
                    "--out", str(ro / "p")],
        "evaluate": ["evaluate", "--pred", str(task / "labelsTr"), "--ref", str(task / "labelsTr"),
                     "--out", str(ro / "m.json")],
        "classify": ["classify", str(task), "--out", str(ro / "c"), "--time-budget", "5"],
        "demo": ["demo", "--out", str(ro / "d")],
    }  # fmt: skip


@pytest.mark.parametrize(
    "verb",
    [
        "synth",
        "preprocess",
        "train",
        "search",
        "transfer",
        "predict",
        "evaluate",
        "classify",
        "demo",
    ],
)
def test_read_only_output_folder(
    fail: Callable[..., str], readonly: Callable[[Path], Path], task: Path, model: Path,
    base: Path, verb: str,
) -> None:  # fmt: skip
    if verb == "demo":  # the embedded task is written outside the read-only folder first
        pytest.importorskip("matplotlib")
    ro = readonly(base / f"ro_{verb}")
    line = fail(*_ro_cases(task, model, ro)[verb])
    assert str(ro) in line and "read-only" in line.lower()


def test_read_only_home_for_the_embedded_task(
    fail: Callable[..., str], readonly: Callable[[Path], Path], base: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    home = readonly(base / "home")
    monkeypatch.delenv("NASMED_CACHE")
    monkeypatch.setenv("HOME", str(home))
    fail("search", "--out", str(base / "s_home"), "--epochs", "1", match="set NASMED_CACHE")


def test_nasmed_cache_is_a_file(
    fail: Callable[..., str], base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = base / "cache_file"
    f.write_text("x")
    monkeypatch.setenv("NASMED_CACHE", str(f))
    fail("search", "--out", str(base / "s_cf"), "--epochs", "1", match=f"{f}: cannot hold")


# --- disk full ---------------------------------------------------------------------------------


def test_disk_full_leaves_no_partial_file_and_a_rerun_completes(
    fail: Callable[..., str], task: Path, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import decathlon.fsutil as fsutil

    real_save = np.save
    calls = {"n": 0}

    def short_write(f: Any, arr: Any, **k: Any) -> None:
        calls["n"] += 1
        if calls["n"] > 3:  # the first case (image, seg, fg) fits, then the disk is full
            f.write(b"\x93NUMPY")
            raise OSError(f"{np.asarray(arr).nbytes} requested and 6 written")
        real_save(f, arr, **k)

    monkeypatch.setattr(fsutil.np, "save", short_write)
    work = base / "w_full"
    args = ["preprocess", str(task), "--out", str(work), "--folds", "2", "--workers", "1"]
    fail(*args, match="no space left on device")
    cache = work / "cache"
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    assert len(list(cache.glob("*.json"))) == 1  # the finished case is kept, complete
    monkeypatch.setattr(fsutil.np, "save", real_save)
    assert main([*args, "-q"]) == 0  # space freed: the rerun completes the cache
    assert len(list(cache.glob("*.json"))) == 4


# --- paths -------------------------------------------------------------------------------------


def test_symlink_loop_input_is_not_called_missing(
    fail: Callable[..., str], model: Path, base: Path
) -> None:
    a, b = base / "loop_a.nii.gz", base / "loop_b.nii.gz"
    a.symlink_to(b)
    b.symlink_to(a)
    fail("predict", "--model", str(model), str(a), "--out", str(base / "p_loop"),
         match="too many levels of symbolic links")  # fmt: skip


def test_symlink_loop_genotype(fail: Callable[..., str], task: Path, base: Path) -> None:
    a, b = base / "g_a.json", base / "g_b.json"
    a.symlink_to(b)
    b.symlink_to(a)
    line = fail("train", str(task), "--arch", str(a), "--out", str(base / "r_loop"))
    assert str(a) in line


# --- weights and checkpoints -------------------------------------------------------------------


def _model_copy(model: Path, dest: Path) -> Path:
    shutil.copytree(model, dest)
    return dest


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


def test_malicious_model_pt(fail: Callable[..., str], model: Path, task: Path, base: Path) -> None:
    m = _model_copy(model, base / "m_evil")
    torch.save({"x": _Evil()}, m / "model.pt")
    line = fail("predict", "--model", str(m), str(task / "imagesTs"), "--out", str(base / "p_e"))
    assert str(m / "model.pt") in line and "weights_only" not in line
    assert not (base / "p_e").exists()


def test_nan_weights_refused_at_load(
    fail: Callable[..., str], model: Path, task: Path, base: Path
) -> None:
    m = _model_copy(model, base / "m_nan")
    state = torch.load(m / "model.pt", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key][...] = float("inf")
    torch.save(state, m / "model.pt")
    fail("predict", "--model", str(m), str(task / "imagesTs"), "--out", str(base / "p_n"),
         match="NaN or infinite")  # fmt: skip


def test_foreign_checkpoint_on_resume(fail: Callable[..., str], task: Path, base: Path) -> None:
    run = base / "r_foreign"
    args = ["train", str(task), "--arch", "unet", "--out", str(run), "--epochs", "1",
            "--steps", "1", "--folds", "2", "--patch", "16", "16", "16", "--width", "0.25",
            "--workers", "1", "--device", "cpu", "--work-dir", str(base / "w_train")]  # fmt: skip
    assert main([*args, "-q"]) == 0
    (run / "model.pt").unlink()  # as if killed before the end
    (run / "model.json").unlink()
    torch.save({"supernet": {}, "foo": torch.zeros(2)}, run / "checkpoints" / "last.pt")
    fail(*args, "--resume", match="not a checkpoint of this run")


# --- genotypes ---------------------------------------------------------------------------------


def test_genotype_not_utf8(fail: Callable[..., str], base: Path) -> None:
    g = base / "latin1.json"
    g.write_bytes(b'{"space": "scnas\xe9"}')
    fail("show", str(g), match=f"{g}: not a genotype (not UTF-8")


def test_genotype_nested_200000_deep(fail: Callable[..., str], task: Path, base: Path) -> None:
    g = base / "deep.json"
    g.write_text("[" * 200_000 + "]" * 200_000)
    fail("train", str(task), "--arch", str(g), "--out", str(base / "r_deep"),
         match=f"{g}: not a genotype (JSON nested too deeply)")  # fmt: skip


def test_genotype_of_a_changed_space_names_the_file(
    fail: Callable[..., str], task: Path, base: Path
) -> None:
    import searchspaces
    from nasmed.supernet import sample_genotype

    g = base / "changed.json"
    genotype = sample_genotype(searchspaces.load("scnas-small"), 0)
    data = genotype.to_dict()
    data["space_hash"] = "0" * 64
    g.write_text(json.dumps(data))
    fail("train", str(task), "--arch", str(g), "--out", str(base / "r_changed"),
         match=f"{g}: search space 'scnas-small' changed")  # fmt: skip


def test_time_budget_inf(fail: Callable[..., str], task: Path, base: Path) -> None:
    fail("classify", str(task), "--out", str(base / "c_inf"), "--time-budget", "inf",
         match="must be a finite number of seconds")  # fmt: skip


# --- inputs checked before anything is written -------------------------------------------------


def test_batch_predict_checks_every_input_first(
    fail: Callable[..., str], model: Path, task: Path, base: Path
) -> None:
    folder = base / "batch"
    folder.mkdir()
    shutil.copy(task / "imagesTs" / "synth_004.nii.gz", folder / "a_good.nii.gz")
    img = nib.load(task / "imagesTs" / "synth_004.nii.gz")
    data = np.asarray(img.dataobj).astype(np.float32)
    data[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), folder / "b_nan.nii.gz")
    out = base / "p_batch"
    fail("predict", "--model", str(model), str(folder), "--out", str(out), match="b_nan.nii.gz")
    assert not out.exists()


def test_singular_affine_refused_before_inference(
    fail: Callable[..., str], model: Path, base: Path
) -> None:
    path = base / "singular.nii.gz"  # a header whose sform has a zero axis (no qform)
    img = nib.Nifti1Image(np.ones((16, 16, 16), np.float32), None)
    img.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)
    img.set_qform(None, code=0)
    nib.save(img, path)
    out = base / "p_sing"
    fail("predict", "--model", str(model), str(path), "--out", str(out), match="singular affine")
    assert not out.exists()


# --- impossible sizes --------------------------------------------------------------------------


def test_search_patch_2048(fail: Callable[..., str], task: Path, base: Path) -> None:
    fail("search", str(task), "--out", str(base / "s_big"), "--patch", "2048", "2048", "2048",
         match="needs about")  # fmt: skip
    assert not (base / "s_big").exists()


def test_synth_shape_30000(fail: Callable[..., str], base: Path) -> None:
    fail("synth", str(base / "t_big"), "--shape", "30000", "30000", "30000", match="needs about")
    assert not (base / "t_big").exists()


@pytest.mark.parametrize(("field", "value"), [("patch", [0, 0, 0]), ("width", 1e5)])
def test_model_json_impossible_network(
    fail: Callable[..., str], model: Path, task: Path, base: Path, field: str, value: Any
) -> None:
    m = _model_copy(model, base / f"m_{field}")
    spec = json.loads((m / "model.json").read_text())
    spec[field] = value
    (m / "model.json").write_text(json.dumps(spec))
    fail("predict", "--model", str(m), str(task / "imagesTs"), "--out", str(base / f"p_{field}"),
         match=f"{m / 'model.json'}: not a valid model file")  # fmt: skip


def test_predict_1024_cubed(fail: Callable[..., str], model: Path, base: Path) -> None:
    path = base / "huge.nii"  # a header claiming 1024^3 int16 voxels; the data is a sparse hole
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((1024, 1024, 1024))
    hdr.set_data_dtype(np.int16)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    with open(path, "wb") as f:
        f.write(hdr.binaryblock + b"\0" * 4)
    os.truncate(path, 352 + 2 * 1024**3)
    try:
        fail("predict", "--model", str(model), str(path), "--out", str(base / "p_huge"),
             match="predicting 1024x1024x1024 voxels needs about")  # fmt: skip
    finally:
        path.unlink()


def test_old_plan_in_model_json(
    fail: Callable[..., str], model: Path, task: Path, base: Path
) -> None:
    m = _model_copy(model, base / "m_old")
    spec = json.loads((m / "model.json").read_text())
    spec["plan"]["version"] = 1
    (m / "model.json").write_text(json.dumps(spec))
    fail("predict", "--model", str(m), str(task / "imagesTs"), "--out", str(base / "p_old"),
         match="run `nasmed preprocess` again")  # fmt: skip


@pytest.fixture(autouse=True)
def _no_cuda_memory_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NASMED_MEMORY_LIMIT", raising=False)
    yield
