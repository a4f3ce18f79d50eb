"""``nasmed predict --backend onnxruntime`` and ``nasmed export bundle`` vs ``nasmed predict``."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nasmed.cli.main import main

pytest.importorskip("onnxruntime")

# Measured on the synthetic test case with the segmenting UNet: 0.991 of the voxels agree
# (foreground Dice 0.933; 12 epochs: with 6, under the nnU-Net loss without background, the
# less certain net agreed on 0.960); the bundle resamples with MONAI's
# Spacing (voxel-centre aligned grid), nasmed with edge-aligned zoom and a separate anisotropic
# axis (docs/export.md).
BUNDLE_AGREEMENT = 0.98


def _labels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def test_onnxruntime_backend_equals_torch(
    export_runs: dict[str, Path], export_task: Path, tmp_path: Path
) -> None:
    run = export_runs["genotype"]
    images = export_task / "imagesTs"
    assert main(["export", "onnx", str(run), "--out", str(tmp_path / "g.onnx"), "-q"]) == 0
    common = ["--device", "cpu", "-q"]
    assert (
        main(["predict", "--model", str(run), str(images), "--out", str(tmp_path / "t"), *common])
        == 0
    )
    args = ["--backend", "onnxruntime", "--onnx", str(tmp_path / "g.onnx")]
    assert (
        main(
            [
                "predict",
                "--model",
                str(run),
                str(images),
                "--out",
                str(tmp_path / "o"),
                *args,
                *common,
            ]
        )
        == 0
    )
    (case,) = sorted((tmp_path / "t").glob("*.nii.gz"))
    a, b = _labels(case), _labels(tmp_path / "o" / case.name)
    assert a.shape == b.shape
    assert float((a == b).mean()) >= 0.999


def test_onnxruntime_backend_without_export_exits_2(
    export_runs: dict[str, Path],
    export_task: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["predict", "--model", str(export_runs["unet"]), str(export_task / "imagesTs")]
    assert main([*args, "--out", str(tmp_path / "o"), "--backend", "onnxruntime"]) == 2
    assert "nasmed export onnx" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _run_bundle(bundle: Path, images: Path, out: Path) -> None:
    args = [
        "--config_file",
        str(bundle / "configs" / "inference.json"),
        "--bundle_root",
        str(bundle),
    ]
    args += ["--dataset_dir", str(images), "--output_dir", str(out)]
    if importlib.util.find_spec("fire") is not None:  # MONAI's command line needs python-fire
        cmd = [sys.executable, "-m", "monai.bundle", "run", *args]
    else:  # the function that command calls
        kw = {a.lstrip("-"): v for a, v in zip(args[::2], args[1::2])}
        cmd = [sys.executable, "-c", f"from monai.bundle import run; run(**{kw!r})"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)


def test_bundle_equals_predict(segmenting_unet: Path, export_task: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    assert main(["export", "bundle", str(segmenting_unet), "--out", str(bundle), "-q"]) == 0
    names = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert names == [
        "configs/inference.json",
        "configs/metadata.json",
        "configs/model.json",
        "models/model.pt",
    ]
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 2
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    assert type(parser.get_parsed_content("network_def")).__name__ == "UNet"

    images = export_task / "imagesTs"
    _run_bundle(bundle, images, tmp_path / "b")
    assert (
        main(
            [
                "predict",
                "--model",
                str(segmenting_unet),
                str(images),
                "--out",
                str(tmp_path / "p"),
                "--device",
                "cpu",
                "-q",
            ]
        )
        == 0
    )
    (case,) = sorted((tmp_path / "p").glob("*.nii.gz"))
    ours, theirs = nib.load(str(case)), nib.load(str(tmp_path / "b" / case.name))
    assert np.allclose(ours.affine, theirs.affine, atol=1e-4)
    a, b = np.asarray(ours.dataobj), np.asarray(theirs.dataobj)
    assert a.shape == b.shape and 0 < (a == 1).mean() < 1  # it segments something
    agreement = float((a == b).mean())
    dice = 2 * float(((a == 1) & (b == 1)).sum()) / float((a == 1).sum() + (b == 1).sum())
    print(f"bundle vs nasmed predict: agreement {agreement:.4f}, foreground Dice {dice:.4f}")
    assert agreement >= BUNDLE_AGREEMENT


def test_bundle_into_non_empty_folder_exits_2(
    export_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["export", "bundle", str(export_runs["unet"]), "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no staging folder left behind
