"""``nasmed export nnunet``: plans that nnU-Net v2 reads; bad input exits 2 with nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import searchspaces
from nasmed.cli.main import main
from nasmed.export.nnunet_plans import export_nnunet_plans
from nasmed.supernet import sample_genotype

from .nnunet_plans_fixture import write_preprocessed

pytest.importorskip("nnunetv2")
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_export_writes_plans_nnunet_reads(
    genotype_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = write_preprocessed(tmp_path)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    assert (
        main(
            [
                "export",
                "nnunet",
                str(genotype_file),
                "--dataset",
                "77",
                "--plans-name",
                "myPlans",
                "-q",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "nnUNetv2_train 77 3d_fullres 0 -p myPlans" in out
    plans = PlansManager(str(folder / "myPlans.json"))
    assert plans.plans_name == "myPlans" and plans.available_configurations == ["3d_fullres"]
    config = plans.get_configuration("3d_fullres")
    assert config.network_arch_class_name == "nasmed.export.nnunet_net.NasmedNnUNet"
    assert config.patch_size == [16, 32, 32]  # [20, 36, 32] fitted to the space's divisor 8
    assert config.pool_op_kernel_sizes == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert config.data_identifier == "nnUNetPlans_3d_fullres"  # reuses the preprocessed data
    assert config.network_arch_init_kwargs["genotype"] == json.loads(genotype_file.read_text())
    assert config.network_arch_init_kwargs_req_import == ["conv_op"]


def test_inherited_configuration(genotype_file: Path, tmp_path: Path) -> None:
    write_preprocessed(tmp_path)
    result = export_nnunet_plans(
        genotype_file, 77, configuration="3d_lowres", preprocessed=tmp_path
    )
    config = PlansManager(str(result.plans_file)).get_configuration("3d_lowres")
    assert config.data_identifier == "lowres" and config.batch_size == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "12"], "no dataset with ID 12"),
        (["--dataset", "77", "--configuration", "2d"], "no configuration '2d'"),
    ],
)
def test_bad_dataset_exits_2(
    args: list[str],
    message: str,
    genotype_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = write_preprocessed(tmp_path)
    assert (
        main(["export", "nnunet", str(genotype_file), *args, "--preprocessed", str(tmp_path)]) == 2
    )
    assert message in _err(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["nnUNetPlans.json"]


def test_dataset_without_plans_exits_2(
    genotype_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dataset005_Prostate").mkdir()
    assert (
        main(
            [
                "export",
                "nnunet",
                str(genotype_file),
                "--dataset",
                "5",
                "--preprocessed",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "nnUNetPlans.json: no plans; run nnUNetv2_plan_and_preprocess" in _err(capsys)
    assert list((tmp_path / "Dataset005_Prostate").iterdir()) == []


def test_genotype_of_unknown_space_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_preprocessed(tmp_path)
    data = sample_genotype(searchspaces.load("scnas-small"), 0).to_dict()
    data["space"] = "no-such-space"
    geno = tmp_path / "genotype.json"
    geno.write_text(json.dumps(data))
    assert (
        main(["export", "nnunet", str(geno), "--dataset", "77", "--preprocessed", str(tmp_path)])
        == 2
    )
    assert "no-such-space" in _err(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["nnUNetPlans.json"]


def test_nnunetv2_missing_exits_2(
    genotype_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = write_preprocessed(tmp_path)
    monkeypatch.setitem(sys.modules, "nnunetv2", None)  # import nnunetv2 -> ImportError
    assert (
        main(
            [
                "export",
                "nnunet",
                str(genotype_file),
                "--dataset",
                "77",
                "--preprocessed",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = _err(capsys)
    assert "needs nnunetv2, which is not installed" in err and "pip install" in err
    assert sorted(p.name for p in folder.iterdir()) == ["nnUNetPlans.json"]
