"""GPU readiness (marker ``cuda``; skipped without CUDA): AMP training, fp16/bf16 prediction,
GPipe on CUDA, a search step, and NCCL DDP where two GPUs exist.

``benchmarks/gpu_check.sh`` runs these on a GPU machine together with the CUDA comparisons.
Tiny shapes: each test takes seconds on a GPU.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from decathlon.synthetic import write_synthetic_task

pytestmark = pytest.mark.cuda

PATCH = (32, 32, 16)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_task(
        tmp_path_factory.mktemp("cuda") / "t", cases=4, shape=(40, 40, 24), classes=1, test_cases=1
    )


def _losses(run: Path) -> list[float]:
    with open(run / "history.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")]


def test_amp_training_step_on_cuda(task: Path, tmp_path: Path) -> None:
    from nasmed.train.config import TrainConfig
    from nasmed.training import train

    config = TrainConfig(epochs=2, patch=PATCH, steps_per_epoch=3, width=0.5, folds=2, amp=True)
    run = train(task, "unet", tmp_path / "r", config, device="cuda", progress=False,
                work_dir=tmp_path / "w")  # fmt: skip
    losses = _losses(run)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    state = torch.load(run / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_prediction_agrees_with_fp32(tmp_path: Path, dtype: torch.dtype) -> None:
    from nasmed.models.spec import load_model
    from nasmed.testing import write_fixed_model

    _, net = load_model(write_fixed_model(tmp_path / "m"), map_location="cuda")
    net.cuda().eval()
    x = torch.randn(2, 1, 64, 64, 32, device="cuda")
    with torch.no_grad():
        ref = net(x).float()
        with torch.autocast("cuda", dtype=dtype):
            low = net(x).float()
    agree = float((ref.argmax(1) == low.argmax(1)).float().mean())
    assert agree >= 0.99, agree
    assert torch.allclose(torch.softmax(ref, 1), torch.softmax(low, 1), atol=0.05)


def test_predict_on_cuda_matches_cpu(task: Path, tmp_path: Path) -> None:
    import numpy as np

    from decathlon.io import read_image
    from nasmed.infer import predict
    from nasmed.testing import write_fixed_model

    model = write_fixed_model(tmp_path / "m")
    inputs = [task / "imagesTs"]
    (gpu,) = predict(model, inputs, tmp_path / "gpu", device="cuda", progress=False)
    (cpu,) = predict(model, inputs, tmp_path / "cpu", device="cpu", progress=False)
    a, b = read_image(gpu).array, read_image(cpu).array
    assert float(np.mean(a == b)) >= 0.99


def test_gpipe_two_partitions_on_cuda(task: Path, tmp_path: Path) -> None:
    from nasmed.pipeline import PipelineConfig
    from nasmed.train.config import TrainConfig
    from nasmed.training import train

    devices = ("cuda:0", "cuda:1") if torch.cuda.device_count() > 1 else ("cuda:0", "cuda:0")
    config = TrainConfig(epochs=1, patch=PATCH, steps_per_epoch=2, width=0.5, folds=2, batch_size=4)
    pipeline = PipelineConfig(devices=devices, chunks=2)
    run = train(task, "unet", tmp_path / "r", config, device="cuda", progress=False,
                work_dir=tmp_path / "w", pipeline=pipeline)  # fmt: skip
    assert (run / "model.pt").is_file() and all(math.isfinite(v) for v in _losses(run))


def test_search_step_on_cuda(task: Path, tmp_path: Path) -> None:
    from nasmed.search.config import SearchConfig
    from nasmed.search.loop import run_search

    config = SearchConfig(
        space="scnas-small", epochs=2, warmup_epochs=1, steps_per_epoch=2, patch=PATCH,
        batch_size=2, width=0.5,
    )  # fmt: skip
    result = run_search(task, tmp_path / "s", config, device="cuda", progress=False)
    assert result.genotype_path.is_file()
    assert result.genotype.space == "scnas-small"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL DDP needs two GPUs")
def test_nccl_ddp_training_on_two_gpus(task: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "nasmed", "train", str(task), "--arch", "unet", "--out", str(tmp_path / "r"),
        "--epochs", "1", "--steps", "2", "--folds", "2", "--width", "0.5", "--device", "cuda",
        "--patch", *map(str, PATCH), "--workers", "1", "-q",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "r" / "model.pt").is_file()
