"""CaseProperties: the typed record of a preprocessed case, written in the cache's existing
JSON form (field for field), read back equal, older caches' missing fields defaulted, and a
malformed file one DatasetError naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from decathlon.caseprep import restore_to_original
from decathlon.errors import DatasetError
from decathlon.preprocess import load_cached_case, run_preprocess
from decathlon.properties import CaseProperties
from decathlon.synthetic import write_synthetic_task

#: The keys the cache's <case>.json held before the record existed (plus the cache's own).
JSON_KEYS = {
    "geometry",
    "orientation",
    "crop_box",
    "shape_after_crop",
    "shape_after_resampling",
    "original_spacing",
    "target_spacing",
    "separate_axis",
    "label_mode",
    "channels",
    "plan_hash",
    "class_voxels",
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("props")
    write_synthetic_task(root / "T", cases=2, shape=(20, 20, 12), test_cases=0, seed=1)
    run_preprocess(root / "T", root / "w", workers=0, progress=False)
    return root / "w" / "cache"


def test_cache_file_keeps_its_format_and_loads_as_the_record(cache: Path) -> None:
    name = sorted(p.stem for p in cache.glob("*.json"))[0]
    raw = json.loads((cache / f"{name}.json").read_text())
    assert set(raw) == JSON_KEYS | {"name", "sources", "arrays"}
    image, seg, props = load_cached_case(cache, name)
    assert isinstance(props, CaseProperties)
    assert props.to_json() == {k: raw[k] for k in JSON_KEYS}  # the same JSON, field for field
    assert CaseProperties.from_json(props.to_json()) == props
    assert props.shape_after_resampling == image.shape[1:]
    assert seg is not None and sum(props.class_voxels.values()) == int(np.count_nonzero(seg))
    # the JSON form is still accepted where the record is expected
    back = restore_to_original(np.asarray(seg), raw, is_label=True)
    assert np.array_equal(back, restore_to_original(np.asarray(seg), props, is_label=True))


def test_older_fields_default_and_malformed_is_one_error(cache: Path) -> None:
    name = sorted(p.stem for p in cache.glob("*.json"))[0]
    data = load_cached_case(cache, name)[2].to_json()
    for key in ("separate_axis", "label_mode", "class_voxels"):
        data.pop(key)
    old = CaseProperties.from_json(data)
    assert old.separate_axis is None and old.label_mode == "linear" and old.class_voxels == {}
    with pytest.raises(DatasetError, match=r"x\.json: not valid case properties"):
        CaseProperties.from_json({**data, "crop_box": [[0, 1]]}, source="x.json")
    del data["crop_box"]
    with pytest.raises(DatasetError, match=r"x\.json: .*missing field 'crop_box'"):
        CaseProperties.from_json(data, source="x.json")


def test_a_damaged_properties_file_is_a_dataset_error_naming_it(cache: Path) -> None:
    name = sorted(p.stem for p in cache.glob("*.json"))[1]
    path = cache / f"{name}.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "shape_after_resampling": [1, 2]}))
    with pytest.raises(DatasetError, match=f"{name}.json: not valid case properties"):
        load_cached_case(cache, name)
