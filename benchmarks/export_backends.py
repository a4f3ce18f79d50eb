"""CPU prediction seconds per case: torch vs onnxruntime, side by side in one run.

Writes a synthetic task, trains each network for a few steps (the timing does not depend on the
weights), exports it with ``nasmed export onnx``, then runs :func:`nasmed.infer.predict` on the
same test cases with the torch network and with the ONNX model in onnxruntime, alternating the
two backends ``--repeats`` times so that load on the machine hits both alike. Both use
``--threads`` threads (torch intra-op threads; onnxruntime intra-op threads). Reports the median
seconds per case of each backend and their ratio (onnxruntime / torch).

Usage::

    python benchmarks/export_backends.py                       # genotype + unet + dynunet, 96^3
    python benchmarks/export_backends.py --shape 48 48 32 --repeats 1 --archs unet   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import searchspaces
from decathlon.synthetic import write_synthetic_task
from nasmed.export.onnx import export_onnx
from nasmed.export.runtime import OnnxRuntimeNetwork
from nasmed.infer import predict
from nasmed.supernet import sample_genotype
from nasmed.train.config import TrainConfig
from nasmed.training import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64))
    ap.add_argument("--patch", type=int, nargs=3, default=(64, 64, 32))
    ap.add_argument("--cases", type=int, default=2, help="test cases predicted per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--archs", nargs="+", default=["genotype", "unet", "dynunet"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        task = write_synthetic_task(
            root / "task", cases=3, shape=tuple(args.shape), classes=1, test_cases=args.cases
        )
        geno = root / "genotype.json"
        sample_genotype(searchspaces.load("scnas-small"), 0).save(geno)
        print(f"shape {list(args.shape)}, patch {list(args.patch)}, {args.threads} thread(s)")
        print(f"{'arch':10s} {'torch s/case':>13s} {'onnxrt s/case':>14s} {'ratio':>6s}")
        for arch in args.archs:
            run = train(
                task,
                str(geno) if arch == "genotype" else arch,
                root / arch,
                TrainConfig(
                    epochs=1, patch=tuple(args.patch), steps_per_epoch=1, folds=3, workers=0
                ),
                device="cpu",
                work_dir=root / "work",
                progress=False,
            )
            export_onnx(run)
            ort_net = OnnxRuntimeNetwork(run / "model.onnx", threads=args.threads)
            times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
            for r in range(args.repeats):
                for backend in ("torch", "onnxruntime"):
                    start = time.perf_counter()
                    predict(
                        run,
                        [task / "imagesTs"],
                        root / f"pred_{arch}_{backend}_{r}",
                        device="cpu",
                        progress=False,
                        network=ort_net if backend == "onnxruntime" else None,
                    )
                    times[backend].append((time.perf_counter() - start) / args.cases)
            t, o = statistics.median(times["torch"]), statistics.median(times["onnxruntime"])
            print(f"{arch:10s} {t:13.2f} {o:14.2f} {o / t:6.2f}")


if __name__ == "__main__":
    main()
