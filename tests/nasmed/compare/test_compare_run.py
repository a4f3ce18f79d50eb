"""``run_compare`` / ``nasmed compare`` end to end on a tiny synthetic task.

One comparison (a found genotype from a tiny search, a second --arch, 3 random genotypes, the
UNet matched on params, FLOPs and step time, 2 seeds, 1 epoch of 2 steps) is run once for the
module; the tests read its files, then resume it, and feed the CLI bad input.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import searchspaces
from decathlon.synthetic import write_synthetic_task
from decathlon.testing import write_task
from nasmed.cli.main import main
from nasmed.compare import CompareConfig, CompareResult, run_compare, runner, stats
from nasmed.compare.candidates import random_seed
from nasmed.compare.config import Match
from nasmed.compare.costs import Cost
from nasmed.errors import RunDirError
from nasmed.genotype import Genotype
from nasmed.search.config import SearchConfig
from nasmed.search.loop import run_search
from nasmed.supernet import sample_genotype

PATCH = (32, 32, 16)
WIDTHS = (0.25, 0.5)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    task = write_synthetic_task(root / "task", cases=4, shape=(32, 32, 24), classes=1, test_cases=0)
    search = root / "search"
    run_search(
        task,
        search,
        SearchConfig(
            space="scnas-small",
            epochs=2,
            warmup_epochs=1,
            steps_per_epoch=2,
            patch=(16, 16, 16),
            batch_size=1,
            val_every=2,
        ),
        device="cpu",
        progress=False,
    )
    other = root / "other.json"
    sample_genotype(searchspaces.load("scnas-small"), 77).save(other)
    return {"root": root, "task": task, "search": search, "other": other}


def _config(setup: dict[str, Path], out: Path, **kw: object) -> CompareConfig:
    base: dict[str, object] = dict(
        out=out,
        archs=(setup["search"] / "genotype.json", setup["other"]),
        random=3,
        baselines=("unet",),
        seeds=2,
        epochs=1,
        steps_per_epoch=2,
        patch=PATCH,
        search_runs=(setup["search"],),
        widths=WIDTHS,
        folds=4,
        device="cpu",
        progress=False,
    )
    base.update(kw)
    return CompareConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def done(setup: dict[str, Path]) -> CompareResult:
    return run_compare(setup["task"], _config(setup, setup["root"] / "out"))


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_files_and_columns(done: CompareResult) -> None:
    out = done.out
    for name in ("compare.csv", "compare.json", "compare.png", "costs.json", "estimates.json"):
        assert (out / name).is_file(), name
    rows = _csv(done.csv_path)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("found") == 2 and kinds.count("random") == 3 and kinds.count("baseline") >= 1
    for column in (
        "name", "width", "matched", "params", "gflops", "step_seconds", "epochs", "dice_mean",
        "dice_sd", "dice_seed0", "dice_seed1", "supernet_search", "percentile", "p_value",
    ):  # fmt: skip
        assert column in rows[0], column
    for row in rows:
        for seed in (0, 1):
            run = out / "runs" / row["name"] / f"seed{seed}"
            assert (run / "model.json").is_file() and (run / "model.pt").is_file()
        assert (
            int(row["params"]) > 0 and float(row["gflops"]) > 0 and float(row["step_seconds"]) > 0
        )
        d0, d1 = float(row["dice_seed0"]), float(row["dice_seed1"])
        assert float(row["dice_mean"]) == pytest.approx((d0 + d1) / 2, abs=1e-5)
    assert done.trained == 2 * len(rows) and done.skipped == 0
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads(done.json_path.read_text())
    assert [n["name"] for n in data["networks"]] == [r["name"] for r in rows]
    assert data["settings"]["random"] == 3


def test_random_genotypes_are_seeded(done: CompareResult) -> None:
    space = searchspaces.load("scnas-small")
    for i in range(3):
        saved = Genotype.load(done.out / "genotypes" / f"random_{i:02d}.json")
        assert saved.cells == sample_genotype(space, random_seed(0, i)).cells


def test_statistics_match_the_table(done: CompareResult, setup: dict[str, Path]) -> None:
    rows = [dict(r) for r in done.rows]
    randoms = [r["dice_mean"] for r in rows if r["kind"] == "random"]
    for r in rows:
        if r["kind"] == "found":
            assert r["percentile"] == pytest.approx(stats.percentile(r["dice_mean"], randoms))
            assert r["p_value"] == pytest.approx(stats.permutation_p(r["dice_mean"], randoms))
            assert 1 / 4 <= r["p_value"] <= 1
        else:
            assert r["percentile"] is None
    est = [r["supernet_search"] for r in rows if r["kind"] == "random"]
    assert all(0 <= e <= 1 for e in est)
    tau, _ = stats.kendall_tau(est, randoms)
    got = done.summary["kendall_tau"]["search"]["tau"]
    assert (got is None and math.isnan(tau)) or got == pytest.approx(tau)
    assert done.summary["kendall_tau"]["search"]["n"] == 3
    # the search's own genotype is the first --arch: two distinct genotypes agree
    space = searchspaces.load("scnas-small")
    agree = done.summary["agreement"]
    a = Genotype.load(setup["search"] / "genotype.json")
    b = Genotype.load(setup["other"])
    assert agree["edges"] == pytest.approx(stats.agreement(a, b, space).edges)
    assert agree["chance_edges"] == pytest.approx(stats.chance_agreement(space).edges)
    assert len(agree["genotypes"]) == 2


def test_baselines_matched_on_each_cost(done: CompareResult) -> None:
    costs = json.loads((done.out / "costs.json").read_text())
    ref = costs["networks"][costs["reference"]]
    assert costs["reference"] == "found_search"
    by_width = costs["baselines"]["unet"]["widths"]
    for criterion, key in (("params", "params"), ("flops", "flops"), ("step_time", "step_seconds")):
        best = min(by_width, key=lambda w: abs(math.log(by_width[w][key] / ref[key])))
        assert costs["baselines"]["unet"]["matched"][criterion] == float(best)
    baselines = [r for r in done.rows if r["kind"] == "baseline"]
    matched = sorted(m for r in baselines for m in r["matched"].split("+"))
    assert matched == ["flops", "params", "step_time"]


def test_resume_skips_finished_runs_and_reruns_the_rest(
    done: CompareResult, setup: dict[str, Path]
) -> None:
    out = setup["root"] / "resumed"
    shutil.copytree(done.out, out)
    gone = out / "runs" / "random_01" / "seed1"
    shutil.rmtree(gone)  # never started
    half = out / "runs" / "random_02" / "seed0"
    (half / "model.json").unlink()  # killed after its last checkpoint
    (half / "model.pt").unlink()
    kept = out / "runs" / "random_00" / "seed0" / "model.json"
    stamp = kept.stat().st_mtime_ns
    again = run_compare(setup["task"], _config(setup, out, resume=True))
    assert again.trained == 2 and again.skipped == len(done.rows) * 2 - 2
    assert kept.stat().st_mtime_ns == stamp
    before = {r["name"]: r for r in done.rows}
    for row in again.rows:  # CPU: the retrained runs give the same Dice
        assert row["dice_seed0"] == pytest.approx(before[row["name"]]["dice_seed0"], abs=1e-6)
        assert row["dice_seed1"] == pytest.approx(before[row["name"]]["dice_seed1"], abs=1e-6)


def test_jobs_train_runs_in_worker_processes_with_the_same_results(
    done: CompareResult, setup: dict[str, Path]
) -> None:
    out = setup["root"] / "jobs"
    shutil.copytree(done.out, out)
    for name in ("random_00", "unet_w0.5"):
        shutil.rmtree(out / "runs" / name / "seed1")
    ended: list[tuple[str, int]] = []
    again = run_compare(
        setup["task"],
        _config(setup, out, resume=True, jobs=2),
        on_run_end=lambda name, seed: ended.append((name, seed)),
    )
    assert again.trained == 2 and sorted(ended) == [("random_00", 1), ("unet_w0.5", 1)]
    before = {r["name"]: r for r in done.rows}
    for row in again.rows:  # one thread per worker: equal up to the order of reductions
        assert row["dice_seed1"] == pytest.approx(before[row["name"]]["dice_seed1"], abs=1e-3)


def test_a_failing_job_is_raised_in_the_parent(setup: dict[str, Path], tmp_path: Path) -> None:
    from nasmed.compare.jobs import RunJob, run_jobs, threads_per_job
    from nasmed.errors import GenotypeError
    from nasmed.train.config import TrainConfig

    assert threads_per_job(2, threads=2) == 1 and threads_per_job(4, threads=2) == 1
    assert threads_per_job(2, threads=8) == 4
    config = TrainConfig(epochs=1, steps_per_epoch=1, patch=PATCH, folds=4)
    jobs = [
        RunJob(name, 0, tmp_path / name, "no-such-network", config, resume=False)
        for name in ("a", "b")
    ]
    with pytest.raises(GenotypeError, match="no-such-network"):
        run_jobs(jobs, task_root=setup["task"], device="cpu", work=tmp_path / "w", workers=2)


def test_resume_adds_networks_and_search_runs(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "grow"
    first = _config(setup, out, archs=(setup["other"],), search_runs=(), random=1, baselines=(),
                    seeds=1, space="scnas-small")  # fmt: skip
    start = run_compare(setup["task"], first)
    kept = out / "runs" / "found_other" / "seed0" / "model.json"
    stamp = kept.stat().st_mtime_ns
    assert {r["name"] for r in start.rows} == {"found_other", "random_00"}
    grown = replace(
        first, archs=(setup["other"], setup["search"] / "genotype.json"),
        search_runs=(setup["search"],), resume=True,
    )  # fmt: skip
    again = run_compare(setup["task"], grown)
    assert again.trained == 1 and again.skipped == 2  # only the added network is trained
    assert kept.stat().st_mtime_ns == stamp
    assert {r["name"] for r in again.rows} == {"found_other", "found_search", "random_00"}
    costs = json.loads((out / "costs.json").read_text())
    assert set(costs["networks"]) == {"found_other", "found_search", "random_00"}
    assert costs["reference"] == "found_other"  # the first start's reference stays
    estimates = json.loads((out / "estimates.json").read_text())["search"]["dice"]
    assert set(estimates) == {"found_other", "found_search", "random_00"}
    recorded = json.loads((out / "run.json").read_text())["settings"]
    assert len(recorded["archs"]) == 2 and len(recorded["search_runs"]) == 1
    # the recorded networks must come first, in their order: names stay bound to networks
    for archs in [(setup["search"] / "genotype.json", setup["other"]), ()]:
        with pytest.raises(RunDirError, match="give those first"):
            run_compare(setup["task"], replace(grown, archs=archs))


def _assert_matched(costs: dict[str, Any], baseline: str, target: Cost) -> None:
    """Each criterion's width of ``baseline`` in ``costs.json`` is the nearest to ``target``."""
    by_width = costs["baselines"][baseline]["widths"]
    for criterion in ("params", "flops", "step_time"):
        key = "step_seconds" if criterion == "step_time" else criterion
        ref = target.value(Match(criterion))
        best = min(by_width, key=lambda w: abs(math.log(by_width[w][key] / ref)))
        assert costs["baselines"][baseline]["matched"][criterion] == float(best)


def test_resume_adds_baselines(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "grow_baselines"
    first = _config(setup, out, archs=(setup["other"],), search_runs=(), random=1, baselines=(),
                    seeds=1, space="scnas-small")  # fmt: skip
    run_compare(setup["task"], first)
    weights = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed0/model.pt")}
    assert len(weights) == 2
    ran: list[str] = []
    grown = replace(first, baselines=("unet", "dynunet"), resume=True)
    again = run_compare(setup["task"], grown, on_run_end=lambda name, seed: ran.append(name))
    # only the baselines are trained, one run per distinct matched width
    assert {name.split("_w")[0] for name in ran} == {"unet", "dynunet"}
    assert again.trained == len(ran) and again.skipped == 2
    assert all(p.stat().st_mtime_ns == t for p, t in weights.items())
    costs = json.loads((out / "costs.json").read_text())
    assert costs["reference"] == "found_other" and costs["patch"] == list(PATCH)
    for name in ("unet", "dynunet"):
        _assert_matched(costs, name, Cost.from_json(costs["networks"]["found_other"]))
    rows = {r["name"]: r for r in _csv(out / "compare.csv")}
    assert {n for n, r in rows.items() if r["kind"] == "baseline"} == set(ran)
    for name in ran:
        baseline, width = name.split("_w")
        matched = costs["baselines"][baseline]["matched"]
        assert rows[name]["matched"] == "+".join(m for m, w in matched.items() if w == float(width))
    networks = json.loads((out / "compare.json").read_text())["networks"]
    assert [n["name"] for n in networks] == ["found_other", "random_00", *ran]
    recorded = json.loads((out / "run.json").read_text())["settings"]
    assert recorded["baselines"] == ["unet", "dynunet"]
    # the recorded baselines must come first, in their order
    for baselines in [("dynunet", "unet"), ("dynunet",), ()]:
        with pytest.raises(RunDirError, match=r"--baselines .*give those first") as info:
            run_compare(setup["task"], replace(grown, baselines=baselines))
        assert "\n" not in str(info.value)


def test_resume_adds_a_baseline_matched_to_the_random_median_at_the_recorded_patch(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "grow_median"
    first = _config(setup, out, archs=(), search_runs=(), random=3, baselines=(), seeds=1,
                    space="scnas-small", patch=None)  # fmt: skip
    run_compare(setup["task"], first)
    before = json.loads((out / "costs.json").read_text())
    # the default patch of a resume is not recomputed: the recorded one is kept for every run
    monkeypatch.setattr(runner, "_default_patch", lambda *a: (16, 16, 16))
    again = run_compare(setup["task"], replace(first, baselines=("unet",), resume=True))
    assert again.skipped == 3 and again.trained >= 1
    assert again.summary["patch"] == before["patch"]
    for run in (out / "runs").glob("unet_*/seed0"):
        assert json.loads((run / "run.json").read_text())["settings"]["patch"] == before["patch"]
    costs = json.loads((out / "costs.json").read_text())
    assert costs["reference"] == "median of the random networks"
    assert costs["patch"] == before["patch"]
    for name, cost in before["networks"].items():  # appended, the recorded costs kept
        assert costs["networks"][name] == cost
    randoms = [Cost.from_json(before["networks"][f"random_{i:02d}"]) for i in range(3)]
    median = Cost(
        int(statistics.median(c.params for c in randoms)),
        statistics.median(c.flops for c in randoms),
        statistics.median(c.step_seconds for c in randoms),
    )
    _assert_matched(costs, "unet", median)


def test_resume_refuses_a_baseline_the_recorded_patch_cannot_take(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "patch"
    args = [
        "compare", str(setup["task"]), "--random", "1", "--space", "scnas-small", "--baselines",
        "--seeds", "1", "--epochs", "1", "--steps", "1", "--folds", "4", "--out", str(out),
        "--device", "cpu", "-q", "--patch", "24", "24", "24",  # the space's divisor is 8
    ]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    files = {name: (out / name).read_bytes() for name in ("costs.json", "run.json")}
    assert main([*args, "--baselines", "unet", "--resume"]) == 2
    err = _err(capsys)
    assert "trains at patch [24, 24, 24]" in err and "multiple of 16" in err
    assert {name: (out / name).read_bytes() for name in files} == files
    assert not list((out / "runs").glob("unet_*"))


def test_time_budget_sets_epochs_from_step_time(setup: dict[str, Path], tmp_path: Path) -> None:
    result = run_compare(
        setup["task"],
        _config(
            setup, tmp_path / "tb", archs=(), search_runs=(), random=1, baselines=(), seeds=1,
            epochs=None, time_budget=0.2, space="scnas-small",
        ),
    )  # fmt: skip
    costs = json.loads((tmp_path / "tb" / "costs.json").read_text())
    step = costs["networks"]["random_00"]["step_seconds"]
    assert costs["epochs"]["random_00"] == max(1, math.floor(0.2 / (2 * step)))
    assert result.rows[0]["epochs"] == costs["epochs"]["random_00"]


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_cli_bad_input_exits_2(
    setup: dict[str, Path], done: CompareResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = str(setup["task"])
    base = ["--epochs", "1", "--steps", "1", "--device", "cpu", "-q"]
    other_space = tmp_path / "scnas.json"
    sample_genotype(searchspaces.load("scnas"), 1).save(other_space)
    few = write_task(tmp_path / "few", cases=1)
    cases = [
        ([task, "--arch", str(setup["other"]), "--arch", str(other_space)], "one space"),
        ([str(few), "--random", "2", "--space", "scnas-small"], "too few for a validation fold"),
        ([task, "--random", "0"], "--random 0 and no --arch"),
        ([task, "--random", "2", "--time-budget", "5"], "not both"),
        ([task, "--arch", str(setup["root"] / "missing.json")], "missing.json"),
        ([task, "--random", "2", "--search-run", str(few)], "not a search run folder"),
        ([task, "--random", "2", "--search-run", str(setup["search"])], "not on the compared"),
        ([task, "--arch", str(setup["other"]), "--patch", "24", "24", "24"], "multiple of 16"),
    ]
    for i, (args, words) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert main(["compare", *args, "--out", str(out), *base]) == 2, args
        assert words in _err(capsys)
        assert not out.exists()
    # an --out inside the task folder (the output rule of decathlon.outputs)
    inside = setup["task"] / "compare_out"
    args = ["compare", task, "--random", "2", "--space", "scnas-small", "--out", str(inside)]
    assert main([*args, *base]) == 2
    assert "compare_out" in _err(capsys) and not inside.exists()
    # an --out that holds another comparison
    args = ["compare", task, "--random", "3", "--out", str(done.out), *base]
    assert main(args) == 2
    assert "pass --resume" in _err(capsys)
    assert main([*args, "--resume"]) == 2
    assert "cannot resume" in _err(capsys)


def test_cli_prints_the_table(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    args = [
        "compare", str(setup["task"]), "--arch", str(setup["other"]), "--random", "2",
        "--baselines", "--seeds", "1", "--epochs", "1", "--steps", "1", "--patch", "32", "32", "16",
        "--folds", "4", "--out", str(out), "--device", "cpu", "-q",
    ]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "found_other" in text and "random_01" in text and str(out / "compare.csv") in text
    assert len(_csv(out / "compare.csv")) == 3
