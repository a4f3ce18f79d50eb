"""Verb ``export``: leave nasmed for nnU-Net v2, ONNX, TorchScript or a MONAI bundle.

``nasmed export nnunet GENOTYPE --dataset ID`` writes an nnU-Net v2 plans file training the
genotype and prints the ``nnUNetv2_train`` command; ``onnx``, ``torchscript`` and ``bundle`` take a
finished ``nasmed train`` run folder. Each calls one function of :mod:`nasmed.export`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from nasmed.cli.common import add_common

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add ``export`` with its routes ``nnunet``, ``onnx``, ``torchscript`` and ``bundle``."""
    p = sub.add_parser(
        "export",
        help="export an architecture or a trained run: nnU-Net v2 plans, ONNX, TorchScript, "
        "MONAI bundle",
        description="Leave nasmed: train a found architecture with nnU-Net v2, or deploy a "
        "trained run as ONNX, TorchScript or a MONAI bundle (docs/export.md).",
    )
    routes = p.add_subparsers(dest="route", metavar="ROUTE")
    routes.required = True

    r = routes.add_parser(
        "nnunet",
        help="write nnU-Net v2 plans whose configuration trains a genotype",
        description="Read $nnUNet_preprocessed/DatasetXXX_*/nnUNetPlans.json, write "
        "NAME.json beside it whose configuration builds the genotype "
        "(nasmed.export.nnunet_net.NasmedNnUNet; patch and strides fitted), and print the "
        "nnUNetv2_train command.",
    )
    r.add_argument("genotype", metavar="GENOTYPE", help="genotype.json or a search run folder")
    r.add_argument("--dataset", type=int, required=True, metavar="ID", help="nnU-Net dataset ID")
    r.add_argument("--configuration", default="3d_fullres", help="default 3d_fullres")
    r.add_argument("--plans-name", default="nasmedPlans", help="default nasmedPlans")
    r.add_argument("--width", type=float, default=1.0, help="channel multiplier (default 1)")
    r.add_argument(
        "--preprocessed", default=None, help="nnU-Net preprocessed folder ($nnUNet_preprocessed)"
    )
    add_common(r)
    r.set_defaults(func=_nnunet, verb="export nnunet")

    r = routes.add_parser(
        "onnx",
        help="export a trained run to ONNX (checked in onnxruntime)",
        description="Write RUN_DIR/model.onnx (dynamic batch and spatial axes) and "
        "model.onnx.json (opset, checked tolerance, measured difference from PyTorch).",
    )
    r.add_argument("run_dir", metavar="RUN_DIR", help="a finished `nasmed train` run")
    r.add_argument("--out", default=None, metavar="FILE", help="default RUN_DIR/model.onnx")
    r.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    add_common(r)
    r.set_defaults(func=_onnx, verb="export onnx")

    r = routes.add_parser(
        "torchscript",
        help="export a trained run to TorchScript (traced)",
        description="Write RUN_DIR/model.ts and model.ts.json (checked tolerance).",
    )
    r.add_argument("run_dir", metavar="RUN_DIR", help="a finished `nasmed train` run")
    r.add_argument("--out", default=None, metavar="FILE", help="default RUN_DIR/model.ts")
    add_common(r)
    r.set_defaults(func=_torchscript, verb="export torchscript")

    r = routes.add_parser(
        "bundle",
        help="export a trained run as a MONAI bundle",
        description="Write DIR/configs/{metadata,inference,model}.json and DIR/models/model.pt; "
        "run with python -m monai.bundle run --config_file DIR/configs/inference.json "
        "--bundle_root DIR --dataset_dir IMAGES --output_dir OUT.",
    )
    r.add_argument("run_dir", metavar="RUN_DIR", help="a finished `nasmed train` run")
    r.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) folder")
    add_common(r)
    r.set_defaults(func=_bundle, verb="export bundle")


def _nnunet(args: argparse.Namespace) -> int:
    from nasmed.export.nnunet_plans import export_nnunet_plans

    result = export_nnunet_plans(
        args.genotype,
        args.dataset,
        configuration=args.configuration,
        plans_name=args.plans_name,
        width=args.width,
        preprocessed=args.preprocessed,
    )
    print(
        f"wrote {result.plans_file} (configuration {result.configuration}, patch "
        f"{list(result.patch)})\ntrain with:\n  {result.command}"
    )
    return 0


def _sidecar(path: Any) -> dict[str, Any]:
    from nasmed.export.staging import sidecar_path

    data: dict[str, Any] = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    return data


def _onnx(args: argparse.Namespace) -> int:
    from nasmed.export.onnx import export_onnx

    path = export_onnx(args.run_dir, out=args.out, opset=args.opset)
    meta = _sidecar(path)
    print(
        f"wrote {path} (opset {meta['opset']}; onnxruntime equals PyTorch within "
        f"{meta['max_abs_diff']:.2g}, tolerance {meta['tolerance']:g})"
    )
    return 0


def _torchscript(args: argparse.Namespace) -> int:
    from nasmed.export.torchscript import export_torchscript

    path = export_torchscript(args.run_dir, out=args.out)
    meta = _sidecar(path)
    print(f"wrote {path} (equals PyTorch within {meta['max_abs_diff']:.2g})")
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from nasmed.export.bundle import export_bundle

    out = export_bundle(args.run_dir, args.out)
    print(
        f"wrote MONAI bundle {out}\nrun with:\n  python -m monai.bundle run --config_file "
        f"{out}/configs/inference.json --bundle_root {out} --dataset_dir IMAGES --output_dir OUT"
    )
    return 0
