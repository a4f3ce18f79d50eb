"""A real, tiny nnU-Net v2 run on CPU with the plans ``nasmed export nnunet`` writes.

``nasmed synth`` -> ``nnUNetv2_convert_MSD_dataset`` -> ``nnUNetv2_plan_and_preprocess`` ->
``nasmed export nnunet`` -> nnU-Net's training entry point (1 epoch of 3 iterations) ->
nnU-Net's prediction entry point on the test images. See ``nnunet_driver.py`` for why training
and prediction go through the entry functions rather than the console scripts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nasmed.cli.main import main

pytest.importorskip("nnunetv2")

BIN = Path(sys.executable).parent
DRIVER = Path(__file__).with_name("nnunet_driver.py")


def _run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{cmd[:2]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.slow
def test_nnunet_trains_and_predicts_a_genotype(
    genotype_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    convert = BIN / "nnUNetv2_convert_MSD_dataset"
    if not convert.exists():
        pytest.skip("nnU-Net's console scripts are not installed beside this python")
    dirs = {k: tmp_path / k for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for key, path in dirs.items():
        path.mkdir()
        monkeypatch.setenv(key, str(path))
    env = {
        **os.environ,
        **{k: str(v) for k, v in dirs.items()},
        "PYTHONPATH": os.pathsep.join(sys.path),
        "nnUNet_def_n_proc": "1",  # one export worker (spawned processes are slow to start)
        "nnUNet_n_proc_DA": "1",
        "nnUNet_compile": "false",
        "OMP_NUM_THREADS": "1",
    }
    task = tmp_path / "Task77_Synth"
    assert (
        main(
            [
                "synth",
                str(task),
                "--cases",
                "5",
                "--shape",
                "32",
                "32",
                "24",
                "--classes",
                "1",
                "-q",
            ]
        )
        == 0
    )
    _run([str(convert), "-i", str(task), "-np", "1"], env)
    _run(
        [
            str(BIN / "nnUNetv2_plan_and_preprocess"),
            "-d",
            "77",
            "-c",
            "3d_fullres",
            "-np",
            "1",
            "-npfp",
            "1",
        ],
        env,
    )

    assert (
        main(
            [
                "export",
                "nnunet",
                str(genotype_file),
                "--dataset",
                "77",
                "--plans-name",
                "nasmedPlans",
            ]
        )
        == 0
    )
    assert "nnUNetv2_train 77 3d_fullres 0 -p nasmedPlans" in capsys.readouterr().out

    env["nnUNet_n_proc_DA"] = "0"  # augment in the training process
    trainer = "nnUNetTrainer_nasmedTiny"
    _run(
        [
            sys.executable,
            str(DRIVER),
            "train",
            "77",
            "3d_fullres",
            "0",
            "-p",
            "nasmedPlans",
            "-tr",
            trainer,
            "-device",
            "cpu",
        ],
        env,
    )
    model = dirs["nnUNet_results"] / "Dataset077_Synth" / f"{trainer}__nasmedPlans__3d_fullres"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    assert "nasmed.export.nnunet_net.NasmedNnUNet" in (model / "plans.json").read_text()

    images = dirs["nnUNet_raw"] / "Dataset077_Synth" / "imagesTs"
    out = tmp_path / "pred"
    predict = [sys.executable, str(DRIVER), "predict", "-i", str(images), "-o", str(out)]
    predict += ["-d", "77", "-c", "3d_fullres", "-p", "nasmedPlans", "-tr", trainer, "-f", "0"]
    _run([*predict, "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta"], env)
    inputs = sorted(images.glob("*_0000.nii.gz"))
    assert inputs
    for image in inputs:
        seg = nib.load(str(out / image.name.replace("_0000", "")))
        assert seg.shape == nib.load(str(image)).shape
        assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}
