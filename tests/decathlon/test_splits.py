"""k-fold splits and bilevel halves: deterministic, by case, disjoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decathlon.errors import DatasetError
from decathlon.splits import Split, bilevel_halves, kfold_splits, load_splits, save_splits

NAMES = [f"case_{i:03d}" for i in range(23)]


def test_kfold_deterministic_and_order_free() -> None:
    a = kfold_splits(NAMES, k=5, seed=3)
    b = kfold_splits(list(reversed(NAMES)), k=5, seed=3)
    assert a == b
    assert kfold_splits(NAMES, k=5, seed=4) != a


def test_kfold_partitions_cases() -> None:
    folds = kfold_splits(NAMES, k=5)
    assert len(folds) == 5
    vals = [set(f["val"]) for f in folds]
    assert set().union(*vals) == set(NAMES)
    assert sum(len(v) for v in vals) == len(NAMES)  # each case validates exactly once
    assert max(map(len, vals)) - min(map(len, vals)) <= 1
    for fold in folds:
        assert not set(fold["train"]) & set(fold["val"])
        assert set(fold["train"]) | set(fold["val"]) == set(NAMES)
        assert fold["train"] == sorted(fold["train"])


def test_kfold_too_few_cases_names_counts() -> None:
    with pytest.raises(DatasetError, match="3 cases are too few for 5 folds"):
        kfold_splits(NAMES[:3], k=5)
    with pytest.raises(DatasetError, match="at least 2 folds"):
        kfold_splits(NAMES, k=1)
    with pytest.raises(DatasetError, match="duplicate"):
        kfold_splits([*NAMES[:4], NAMES[0]], k=2)


def test_bilevel_halves() -> None:
    weights, arch = bilevel_halves(NAMES, seed=1)
    assert (weights, arch) == bilevel_halves(list(reversed(NAMES)), seed=1)
    assert not set(weights) & set(arch)
    assert set(weights) | set(arch) == set(NAMES)
    assert len(weights) == 12 and len(arch) == 11
    with pytest.raises(DatasetError, match="1 training case"):
        bilevel_halves(NAMES[:1])


def test_save_load_round_trip(tmp_path: Path) -> None:
    folds = kfold_splits(NAMES, k=4)
    path = save_splits(tmp_path / "splits.json", folds)
    assert load_splits(path) == folds
    # the file is still nnU-Net's form: a list of {"train": [...], "val": [...]}
    assert json.loads(path.read_text()) == [f.to_json() for f in folds]
    assert all(set(f) == {"train", "val"} for f in json.loads(path.read_text()))
    # the JSON form is accepted on save too (the file written before Split existed)
    again = save_splits(tmp_path / "again.json", [f.to_json() for f in folds])
    assert again.read_text() == path.read_text()


def test_split_is_typed_and_reads_as_its_json_form() -> None:
    fold = kfold_splits(NAMES, k=4)[0]
    assert isinstance(fold, Split) and isinstance(fold.train, tuple)
    assert fold["train"] == list(fold.train) and fold["val"] == list(fold.val)
    assert {**fold} == fold.to_json() and sorted(fold) == ["train", "val"]
    with pytest.raises(KeyError):
        fold["test"]
    assert Split.from_json(fold.to_json()) == fold
    assert fold != fold.to_json()  # a record, not a dict
    with pytest.raises(DatasetError, match=r"x\.json: fold 3: cases in both"):
        Split.from_json({"train": ["a"], "val": ["a"]}, source="x.json", index=3)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not a valid splits file"),
        ("[]", "non-empty list"),
        ('[{"train": ["a"]}]', "exactly the keys"),
        ('[{"train": ["a"], "val": ["a"]}]', "both train and val"),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "splits.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=match):
        load_splits(path)
    with pytest.raises(DatasetError, match="not found"):
        load_splits(tmp_path / "missing.json")


# ---- small tasks ------------------------------------------------------------------------------


@pytest.mark.parametrize(("cases", "folds"), [(9, 5), (5, 5), (4, 4), (3, 3), (2, 2), (1, 1)])
def test_default_folds_shrink_to_small_tasks(
    cases: int, folds: int, caplog: pytest.LogCaptureFixture
) -> None:
    from decathlon.splits import choose_folds

    with caplog.at_level("WARNING", logger="decathlon.splits"):
        assert choose_folds(cases) == folds
    assert bool(caplog.records) == (cases < 5)
    assert choose_folds(cases, 7) == 7  # an explicit number is kept (and checked by k-fold)


def test_fold_all_trains_on_every_case_and_single_case_tasks_split() -> None:
    from decathlon.errors import DatasetError
    from decathlon.splits import fold_split, task_splits

    names = ["b", "a", "c"]
    splits = task_splits(names, 3)
    assert fold_split(splits, "all") == Split(("a", "b", "c"), ("a", "b", "c"))
    assert fold_split(splits, 1) == splits[1]
    one = task_splits(["only"], 1)
    assert one == [Split(("only",), ())]
    assert fold_split(one, "all").to_json() == {"train": ["only"], "val": ["only"]}
    with pytest.raises(DatasetError, match=r"no validation case.*--fold all"):
        fold_split(one, 0)
    with pytest.raises(DatasetError, match="out of range"):
        fold_split(splits, 3)
