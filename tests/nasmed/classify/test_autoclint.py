"""AutoCLINT rules and the time-budgeted trainer on in-memory slices; backbone checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from decathlon.slices import SliceSet
from nasmed.classify.autoclint import (
    AutoClint,
    ClintConfig,
    auto_batch_size,
    auto_input_size,
    is_multilabel,
)
from nasmed.classify.backbones import BackboneSpec
from nasmed.classify.pretrained import load_pretrained, save_backbone
from nasmed.classify.saol import build_classifier
from nasmed.classify.selfsup import LossConfig
from nasmed.errors import ConfigError


def test_rules_from_the_data() -> None:
    assert auto_input_size([(48, 48), (48, 40), (50, 50)]) == 48
    assert auto_input_size([(512, 512)]) == 64
    assert auto_input_size([(300, 100)]) == 128  # elongated
    assert auto_input_size([(10, 10)]) == 16
    assert auto_batch_size(32, 1000) == 64 and auto_batch_size(64, 1000) == 32
    assert auto_batch_size(128, 1000) == 16 and auto_batch_size(32, 40) == 8
    assert is_multilabel(np.array([[1, 1], [0, 0]]))
    assert not is_multilabel(np.array([[1, 0], [0, 1]]))


@pytest.mark.parametrize("head", ["saol", "gap"])
def test_trainer_keeps_its_budget_and_predicts_anytime(
    head: str, tmp_path: Path, toy: Callable[..., SliceSet]
) -> None:
    train, val, test = (toy(seed=i) for i in range(3))
    model = build_classifier(BackboneSpec("resnet10", 1, 4), 2, head)
    cfg = ClintConfig(time_budget=3.0, reserve=0.2, loss=LossConfig(cutmix=True))
    start = time.perf_counter()
    res = AutoClint(model, cfg, train, val, test, torch.device("cpu"), out_dir=tmp_path).run()
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0 + 0.5
    assert res.steps > 0 and res.predictions and res.final_probs is not None
    times = [p.seconds for p in res.predictions]
    assert times == sorted(times) and times[-1] <= 3.0
    assert res.final_probs.shape == (len(test), 2)
    assert res.alc is not None and -1.0 <= res.alc <= 1.0
    assert res.predictions[-1].score is not None and res.predictions[-1].score > 0.2
    index = (tmp_path / "anytime" / "index.csv").read_text().splitlines()
    assert len(index) == 1 + len(res.predictions)
    assert len(list((tmp_path / "anytime").glob("pred_*.npy"))) == len(res.predictions)


def test_backbone_checkpoint_round_trip_and_mismatch(tmp_path: Path) -> None:
    a = build_classifier(BackboneSpec("resnet10", 1, 4), 2, "saol")
    path = save_backbone(tmp_path / "backbone.pt", a)
    b = build_classifier(BackboneSpec("resnet10", 1, 4), 3, "gap")
    load_pretrained(b, path)
    for k, v in a.backbone.state_dict().items():
        assert torch.equal(v, b.backbone.state_dict()[k])
    c = build_classifier(BackboneSpec("resnet10", 3, 4), 2, "saol")  # channels are adapted
    load_pretrained(c, path)
    with pytest.raises(ConfigError, match="resnet10 of width 4"):
        load_pretrained(build_classifier(BackboneSpec("resnet18", 1, 4), 2, "saol"), path)
    with pytest.raises(ConfigError):
        load_pretrained(build_classifier(BackboneSpec("resnet10", 1, 8), 2, "saol"), path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a nasmed 2D backbone"):
        load_pretrained(a, tmp_path / "other.pt")
