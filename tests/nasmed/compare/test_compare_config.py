"""``CompareConfig``: bad settings are one-line ConfigErrors, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasmed.compare import CompareConfig, Match
from nasmed.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"epochs": 2, "time_budget": 10.0}, "not both"),
        ({}, "--epochs E or --time-budget"),
        ({"epochs": 1, "random": 0}, "--random 0 and no --arch"),
        ({"epochs": 1, "random": -1}, "--random must be >= 0"),
        ({"epochs": 1, "baselines": ("resnet",)}, "unknown"),
        ({"epochs": 1, "match": ("latency",)}, "--match"),
        ({"epochs": 1, "seeds": 0}, "--seeds"),
        ({"time_budget": -1.0}, "--time-budget"),
        ({"epochs": 1, "patch": (16, 16)}, "--patch"),
        ({"epochs": 1, "archs": "found/genotype.json"}, "one string"),
    ],
)
def test_bad_settings(tmp_path: Path, kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        CompareConfig(out=tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_defaults_and_json(tmp_path: Path) -> None:
    c = CompareConfig(out=str(tmp_path), archs=["a.json"], epochs=3, match=["params"])  # type: ignore[arg-type]
    assert c.out == tmp_path and c.archs == (Path("a.json"),)
    assert c.match == (Match.PARAMS,)
    data = c.to_json()
    assert data["epochs"] == 3 and data["time_budget"] is None and data["match"] == ["params"]
    assert data["archs"] == [str(Path("a.json").resolve())]
    assert CompareConfig(out=tmp_path, random=0, archs=(Path("a.json"),), epochs=1).random == 0


def test_amp_is_recorded_only_when_given(tmp_path: Path) -> None:
    # a comparison made before ``amp`` existed has no such key in run.json and must resume
    assert "amp" not in CompareConfig(out=tmp_path, random=2, epochs=1).to_json()
    assert CompareConfig(out=tmp_path, random=2, epochs=1, amp=True).to_json()["amp"] is True
    assert CompareConfig(out=tmp_path, random=2, epochs=1, amp=False).to_json()["amp"] is False


def test_step_time_under_amp_is_measured_in_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from nasmed.compare.costs import measure_cost

    seen: list[torch.dtype] = []
    real = torch.nn.functional.conv3d

    def spy(x: torch.Tensor, *a: object, **kw: object) -> torch.Tensor:
        out = real(x, *a, **kw)  # type: ignore[arg-type]
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.functional, "conv3d", spy)
    plain = measure_cost("unet", 1, 2, (16, 16, 16), width=0.25, repeats=1)
    assert seen and set(seen) == {torch.float32}
    seen.clear()
    amp = measure_cost("unet", 1, 2, (16, 16, 16), width=0.25, repeats=1, amp=True)
    assert torch.bfloat16 in seen  # the timed step ran under autocast
    assert amp.params == plain.params and amp.step_seconds > 0
