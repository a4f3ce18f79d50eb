"""run_search: files written, determinism, kill-and-resume, mixed mode, cost term, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import searchspaces
from decathlon.errors import DatasetError
from decathlon.synthetic import write_synthetic_task
from nasmed.errors import ConfigError, RunDirError
from nasmed.genotype import Genotype, check_space
from nasmed.search.config import CostMetric, CostTerm, SearchConfig
from nasmed.search.loop import SearchResult, run_search
from nasmed.supernet import Mode
from nasmed.train.history import read_history
from searchspaces import SpaceError

#: scnas-small at 16^3: 1 warm-up epoch + 2 search epochs of 2 steps, validating after epochs
#: 2 and 3 (a few seconds on a CPU).
TINY = SearchConfig(
    space="scnas-small",
    epochs=3,
    warmup_epochs=1,
    steps_per_epoch=2,
    patch=(16, 16, 16),
    batch_size=1,
    tau_start=5.0,
    tau_end=0.5,
    arch_lr=0.05,
    val_every=2,
    seed=3,
)
MEMORY = CostMetric.MEMORY


def _search(
    task: Path, work: Path, run: Path, config: SearchConfig = TINY, **kw: Any
) -> SearchResult:
    return run_search(task, run, config, device="cpu", work_dir=work, progress=False, **kw)


def _logits(run: Path, epoch: int) -> dict[str, Any]:
    data = json.loads((run / "alphas" / f"epoch_{epoch:04d}.json").read_text())
    return data["logits"]


@pytest.fixture(scope="module")
def reference(
    search_task: Path, search_work: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An uninterrupted tiny search."""
    run = tmp_path_factory.mktemp("reference") / "run"
    _search(search_task, search_work, run)
    return run


def test_search_writes_every_output(reference: Path) -> None:
    run = reference
    genotype = Genotype.load(run / "genotype.json")
    space = searchspaces.load("scnas-small")
    check_space(genotype, space)
    assert genotype.seed == TINY.seed
    assert genotype.search["mode"] == "sampled" and genotype.search["patch"] == [16, 16, 16]
    assert len(genotype.search["weight_cases"]) + len(genotype.search["arch_cases"]) == 3

    rows = read_history(run / "history.csv")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert [r["phase"] for r in rows] == ["warmup", "search", "search"]
    assert rows[0]["loss_a"] is None and rows[1]["loss_a"] > 0
    assert [r["tau"] for r in rows] == pytest.approx([5.0, 5.0, 0.5])
    for key in ("entropy_ops", "entropy_inputs", "entropy_ops.encoder", "entropy_inputs.decoder"):
        assert all(0 <= r[key] <= r[key.split(".")[0] + "_max"] + 1e-6 for r in rows)
    assert [r["entropy_weight"] for r in rows] == [0.0, 0.0, TINY.entropy_weight]  # ramped
    assert rows[0]["val_dice"] is None and all(0 <= r["val_dice"] <= 1 for r in rows[1:])
    assert all(r["peak_memory_mb"] > 0 and r["seconds"] > 0 for r in rows)

    snaps = sorted(p.name for p in (run / "alphas").iterdir())
    assert snaps == ["epoch_0000.json", "epoch_0001.json", "epoch_0002.json"]
    first, last = _logits(run, 0), _logits(run, 2)
    assert first["encoder"]["ops"] == [[0.0] * len(space.ops)] * len(space.edges())  # warm-up
    assert last["encoder"]["ops"] != first["encoder"]["ops"]  # the architecture moved
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3 and "gumbel" in state["rng"]["generators"]
    assert list((run / "tensorboard").iterdir())
    assert json.loads((run / "run.json").read_text())["kind"] == "search"
    assert (run / "plan.json").is_file()


def test_decoded_genotype_is_the_argmax_of_the_final_logits(reference: Path) -> None:
    from nasmed.search.decode import decode

    space = searchspaces.load("scnas-small")
    genotype = Genotype.load(reference / "genotype.json")
    assert decode(_logits(reference, 2), space).cells == genotype.cells


def test_same_seed_same_genotype_and_logits(
    reference: Path, search_task: Path, search_work: Path, tmp_path: Path
) -> None:
    again = _search(search_task, search_work, tmp_path / "again")
    assert (
        again.genotype.to_dict()["cells"]
        == Genotype.load(reference / "genotype.json").to_dict()["cells"]
    )
    assert _logits(tmp_path / "again", 2) == _logits(reference, 2)


def test_kill_and_resume_equals_the_uninterrupted_run(
    reference: Path, search_task: Path, search_work: Path, tmp_path: Path
) -> None:
    run = tmp_path / "killed"

    def kill(epoch: int, row: dict[str, Any]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _search(search_task, search_work, run, on_epoch_end=kill)
    assert not (run / "genotype.json").exists()
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 2
    with pytest.raises(RunDirError, match="--resume"):
        _search(search_task, search_work, run)

    resumed = _search(search_task, search_work, run, resume=True)
    expected = Genotype.load(reference / "genotype.json")
    assert resumed.genotype.cells == expected.cells
    assert _logits(run, 2) == _logits(reference, 2)
    ref_rows, rows = read_history(reference / "history.csv"), read_history(run / "history.csv")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert [r["loss_w"] for r in rows] == [r["loss_w"] for r in ref_rows]
    assert [r["loss_a"] for r in rows] == [r["loss_a"] for r in ref_rows]

    # a finished run resumed again returns its genotype; changed settings are refused
    assert _search(search_task, search_work, run, resume=True).genotype == resumed.genotype
    with pytest.raises(RunDirError, match="seed"):
        _search(search_task, search_work, run, replace(TINY, seed=4), resume=True)


def test_mixed_mode_runs(search_task: Path, search_work: Path, tmp_path: Path) -> None:
    config = replace(TINY, mode=Mode.MIXED, epochs=2, steps_per_epoch=1)
    result = _search(search_task, search_work, tmp_path / "mixed", config)
    assert result.genotype.search["mode"] == "mixed"
    rows = read_history(tmp_path / "mixed" / "history.csv")
    assert rows[-1]["phase"] == "search" and rows[-1]["loss_a"] > 0


def test_cost_term_gradient_lowers_the_expected_cost() -> None:
    from nasmed.supernet import Supernet, expected_cost

    space = searchspaces.load("scnas-small")
    net = Supernet(space, 1, 2)
    patch = (16, 16, 16)
    before = expected_cost(net.logits(), space, patch)["act_bytes"]
    term = CostTerm(MEMORY, budget=float(before.detach()) / 4, weight=1.0)
    term.penalty(expected_cost(net.logits(), space, patch)).backward()
    grad = net.arch_ops["encoder"].grad
    assert grad is not None
    free, conv3 = space.ops.index("identity"), space.ops.index("conv3")
    assert (grad[:, conv3] > grad[:, free]).all()  # descent moves mass from conv3 to identity
    with torch.no_grad():
        for p in net.arch_parameters():
            assert p.grad is not None
            p.sub_(10.0 * p.grad)
    assert expected_cost(net.logits(), space, patch)["act_bytes"] < before
    # under the budget the term is zero
    under = CostTerm(MEMORY, float(before.detach()) * 2).penalty({"act_bytes": before})
    assert float(under.detach()) == 0.0


def test_cost_aware_search_ends_cheaper(
    reference: Path, search_task: Path, search_work: Path, tmp_path: Path
) -> None:
    budget = CostTerm(MEMORY, budget=1e5, weight=5.0)
    _search(search_task, search_work, tmp_path / "cost", replace(TINY, cost=budget))
    plain = read_history(reference / "history.csv")[-1]["exp_act_mb"]
    cheap = read_history(tmp_path / "cost" / "history.csv")[-1]["exp_act_mb"]
    assert cheap < plain


def test_too_few_cases_is_refused_before_writing(tmp_path: Path) -> None:
    task = write_synthetic_task(
        tmp_path / "two", cases=2, shape=(16, 16, 16), classes=1, test_cases=0
    )
    with pytest.raises(DatasetError, match="too few for a search"):
        run_search(task, tmp_path / "run", TINY, device="cpu", progress=False)
    assert not (tmp_path / "run").exists()


def test_patch_not_fitting_the_space_is_refused(search_task: Path, tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="nearest valid patch: 24 16 16"):
        run_search(search_task, tmp_path / "run", replace(TINY, patch=(22, 16, 16)), progress=False)
    assert not (tmp_path / "run").exists()


def test_folder_of_another_run_is_refused(
    search_task: Path, search_work: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty"):
        _search(search_task, search_work, other)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"warmup_epochs": 3}, "--warmup"),
        ({"epochs": 0}, "--epochs"),
        ({"mode": "darts"}, "--mode"),
        ({"patch": (16, 16)}, "--patch"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_bad_settings_raise_config_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(TINY, **changes)


def test_a_run_of_an_earlier_version_is_refused_on_resume_in_one_line(
    reference: Path, search_task: Path, search_work: Path, tmp_path: Path
) -> None:
    import shutil

    run = tmp_path / "old"
    shutil.copytree(reference, run)
    (run / "genotype.json").unlink()
    info = json.loads((run / "run.json").read_text())
    for key in ("estimator", "entropy_weight"):  # what a run before --estimator lacks
        del info["settings"][key]
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunDirError, match=r"cannot resume with estimator='gdas'") as err:
        _search(search_task, search_work, run, resume=True)
    assert "\n" not in str(err.value)
    assert Genotype.load(reference / "genotype.json").search["estimator"] == "gdas"


@pytest.mark.parametrize("estimator", ["proxyless", "reinforce"])
def test_kill_and_resume_repeats_every_estimator(
    estimator: str, search_task: Path, search_work: Path, tmp_path: Path
) -> None:
    config = replace(TINY, estimator=estimator, val_every=3)  # type: ignore[arg-type]
    whole = _search(search_task, search_work, tmp_path / "whole", config)

    def kill(epoch: int, row: dict[str, Any]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _search(search_task, search_work, run, config, on_epoch_end=kill)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    if estimator == "reinforce":
        assert isinstance(state["estimator"]["baseline"], float)  # the baseline is kept
    resumed = _search(search_task, search_work, run, config, resume=True)
    assert _logits(run, 2) == _logits(tmp_path / "whole", 2)
    assert resumed.genotype.cells == whole.genotype.cells


def test_time_budget_may_change_on_resume_and_old_checkpoints_resume(
    reference: Path, search_task: Path, search_work: Path, tmp_path: Path
) -> None:
    """A killed search resumes with another --time-budget (it was refused before), from a
    checkpoint in the layout written before the versioned schema, and ends as the reference."""

    def kill(epoch: int, row: dict[str, Any]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _search(search_task, search_work, run, replace(TINY, time_budget=3600.0), on_epoch_end=kill)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    old = {k: v for k, v in state.items() if k not in ("schema", "version", "kind", "model")}
    old["supernet"] = state["model"]  # the old layout's names
    old["last_dice"] = old.pop("final_dice")
    torch.save(old, run / "checkpoint.pt")
    resumed = _search(search_task, search_work, run, replace(TINY, time_budget=7200.0), resume=True)
    assert _logits(run, 2) == _logits(reference, 2)
    assert resumed.genotype.cells == Genotype.load(reference / "genotype.json").cells


def test_search_with_bf16_and_activation_checkpointing(
    search_task: Path, search_work: Path, tmp_path: Path
) -> None:
    config = replace(TINY, epochs=2, amp=True, activation_checkpointing=True)
    result = _search(search_task, search_work, tmp_path / "bf16", config)
    rows = read_history(result.history_path)
    assert len(rows) == 2 and all(r["loss_w"] > 0 for r in rows) and rows[1]["loss_a"] > 0
    check_space(result.genotype, searchspaces.load("scnas-small"))
