"""nasmed search / nasmed demo: outputs printed, one-line errors with exit status 2."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import searchspaces
from decathlon.synthetic import write_synthetic_task
from nasmed.cli.main import main
from nasmed.genotype import Genotype
from nasmed.search.config import SearchConfig
from nasmed.train.config import TrainConfig

TINY_ARGS = [
    "--space", "scnas-small", "--epochs", "2", "--warmup", "1", "--steps", "1",
    "--patch", "16", "16", "16", "--batch", "1", "--device", "cpu", "-q",
]  # fmt: skip


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_search")
    return write_synthetic_task(root / "task", cases=3, shape=(16, 16, 16), classes=1, test_cases=0)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("nasmed search: error: ")
    return err[0]


def test_search_prints_the_genotype_and_the_outputs(
    task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(["search", str(task), "--out", str(run), *TINY_ARGS, "--mode", "mixed"]) == 0
    out = capsys.readouterr().out
    genotype = Genotype.load(run / "genotype.json")
    assert genotype.search["mode"] == "mixed" and genotype.search["warmup_epochs"] == 1
    assert out.startswith("genotype of search space 'scnas-small'")
    assert f"genotype:        {run / 'genotype.json'}" in out
    assert str(run / "history.csv") in out and str(run / "alphas") in out

    # the folder now holds a search: refused without --resume, reused with it
    assert main(["search", str(task), "--out", str(run), *TINY_ARGS, "--mode", "mixed"]) == 2
    assert "--resume" in _error_line(capsys)
    args = ["search", str(task), "--out", str(run), *TINY_ARGS, "--mode", "mixed", "--resume"]
    assert main(args) == 0
    assert genotype.to_text() in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--patch", "12", "16", "16"], "nearest valid patch: 16 16 16"),
        (["--cost-budget", "memory"], "expected METRIC=VALUE"),
        (["--cost-budget", "speed=3"], "unknown metric 'speed'"),
        (["--warmup", "2"], "--warmup"),
        (["--space", "nope"], "nope"),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    run = tmp_path / "run"
    assert main(["search", str(task), "--out", str(run), *TINY_ARGS, *extra]) == 2
    assert message in _error_line(capsys)
    assert not run.exists()


def test_too_few_cases_and_foreign_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = write_synthetic_task(
        tmp_path / "small", cases=2, shape=(16, 16, 16), classes=1, test_cases=0
    )
    assert main(["search", str(small), "--out", str(tmp_path / "run"), *TINY_ARGS]) == 2
    assert "too few for a search" in _error_line(capsys)
    assert not (tmp_path / "run").exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("x")
    assert main(["search", str(small), "--out", str(foreign), *TINY_ARGS]) == 2
    _error_line(capsys)
    assert [p.name for p in foreign.iterdir()] == ["data.txt"]


@pytest.mark.slow
def test_demo_on_the_embedded_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NASMED_CACHE", str(tmp_path / "cache"))
    tiny = SearchConfig(
        space="scnas-small", epochs=2, warmup_epochs=1, steps_per_epoch=1, patch=(16, 16, 16)
    )
    monkeypatch.setattr("nasmed.demo.DEMO_SEARCH", replace(tiny, batch_size=1))
    tiny_train = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1, workers=0)
    monkeypatch.setattr("nasmed.demo.DEMO_TRAIN", tiny_train)
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out", str(out_dir), "--device", "cpu", "-q"]) == 0
    out = capsys.readouterr().out
    assert "genotype of search space 'scnas-small'" in out
    assert f"search run:          {out_dir / 'search'}" in out
    # then the found architecture is trained, predicts, and is scored on held-out cases
    assert f"training run:        {out_dir / 'train'}" in out and "Dice" in out
    assert (out_dir / "train" / "model.pt").is_file() and (out_dir / "metrics.json").is_file()
    assert len(list((out_dir / "predictions" / "test").glob("*.nii.gz"))) == 2
    assert list((out_dir / "predictions" / "validation").glob("*.nii.gz"))
    genotype = Genotype.load(out_dir / "search" / "genotype.json")
    assert genotype.search["task_name"] == "NasmedSynthetic"
    # a second demo reuses the finished search
    assert main(["demo", "--out", str(out_dir), "--device", "cpu", "-q"]) == 0
    assert genotype.to_text() in capsys.readouterr().out


def test_search_option_defaults_are_the_config_defaults() -> None:
    from nasmed.cli.search import DEFAULTS, ESTIMATORS
    from nasmed.search.config import Estimator

    config = SearchConfig()
    for name, value in DEFAULTS.items():
        got = getattr(config, name)
        assert (got.value if hasattr(got, "value") else got) == value, name
    assert tuple(e.value for e in Estimator) == ESTIMATORS


def test_precision_options_build_the_search_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SearchConfig] = []

    def fake_search(task: object, out: object, config: SearchConfig, **kw: object) -> None:
        seen.append(config)
        raise SystemExit(0)

    monkeypatch.setattr("nasmed.search.loop.run_search", fake_search)
    with pytest.raises(SystemExit):
        main(["search", "T", "--out", "R", "--amp-dtype", "bf16", "--activation-checkpointing"])
    assert seen[0].amp_dtype == "bf16" and seen[0].activation_checkpointing is True
    assert seen[0].amp is SearchConfig().amp  # --amp not given: the config's default
    with pytest.raises(SystemExit):
        main(["search", "T", "--out", "R", "--amp"])
    assert seen[1].amp is True and seen[1].activation_checkpointing is False


def test_estimator_options_reach_the_run(task: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*TINY_ARGS, "--estimator", "proxyless", "--entropy-weight", "2.5"]
    assert main(["search", str(task), "--out", str(run), *args]) == 0
    search = Genotype.load(run / "genotype.json").search
    assert search["estimator"] == "proxyless" and search["entropy_weight"] == 2.5
    assert search["arch_weight_decay"] == 0.0


def test_a_space_files_search_gives_a_trainable_genotype(
    task: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(searchspaces.space_path("scnas-small").read_text(encoding="utf-8"))
    space_file = tmp_path / "mine.yaml"
    space_file.write_text(yaml.safe_dump({**data, "name": "mine"}), encoding="utf-8")
    run = tmp_path / "run"
    args = ["search", str(task), "--out", str(run), *TINY_ARGS, "--space", str(space_file)]
    assert main(args) == 0
    space_file.unlink()  # the genotype carries the space: nothing else is needed to train it
    genotype = Genotype.load(run / "genotype.json")
    assert genotype.space == "mine" and genotype.space_def is not None
    train = tmp_path / "train"
    args = ["train", str(task), "--arch", str(run / "genotype.json"), "--out", str(train),
            "--epochs", "1", "--steps", "1", "--patch", "16", "16", "16", "--batch", "1",
            "--workers", "0", "--device", "cpu", "-q"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    spec = json.loads((train / "model.json").read_text(encoding="utf-8"))
    assert spec["genotype"]["space_def"] == genotype.to_dict()["space_def"]
