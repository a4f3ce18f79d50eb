"""``nasmed export bundle RUN_DIR --out DIR``: a MONAI bundle of a trained run.

Layout (MONAI's bundle convention)::

    DIR/configs/metadata.json    versions, task, network_data_format (inputs, outputs)
    DIR/configs/inference.json   network_def, preprocessing, inferer, postprocessing, run
    DIR/configs/model.json       the run's model.json (what network_def rebuilds)
    DIR/models/model.pt          the state dict (loads with torch.load(weights_only=True))

Run it with ``python -m monai.bundle run --config_file DIR/configs/inference.json --bundle_root
DIR --dataset_dir IMAGES --output_dir OUT`` (every ``*.nii.gz`` of IMAGES is segmented into
``OUT/<name>.nii.gz`` on the input's grid).

The preprocessing reproduces the plan with MONAI transforms, in nasmed's order
(:func:`decathlon.caseprep.preprocess_case`): load (channel first), reorder the axes to the
plan's canonical orientation (``Orientationd``, RAS, as :mod:`decathlon.orientation` does), crop
to the non-zero box of all channels, normalise (CT: clip to the plan's percentiles and z-score
with the dataset's statistics, as one linear
``ScaleIntensityRanged`` with ``clip``; MRI: per-image ``NormalizeIntensityd``, inside the non-zero
mask when the plan says so), resample to the target spacing (``Spacingd``, spline order of the
plan). The inferer is MONAI's ``SlidingWindowInferer`` (window = the training patch, Gaussian
blending, overlap 0.5); the postprocessing is softmax, ``Invertd`` (probabilities back to the
input grid), argmax and ``SaveImaged``. MONAI's ``Spacing`` aligns grids at voxel centres where
nasmed's resampling aligns them at edges and treats anisotropic axes separately, so the labels
differ from ``nasmed predict``'s at a few boundary voxels (docs/export.md gives the measured
agreement). No pytorch-ignite is needed: ``run`` is a plain loop over the data loader.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch

import nasmed
from decathlon.plan import Plan
from nasmed.errors import ConfigError
from nasmed.export.staging import staged_dir
from nasmed.models.spec import MODEL_FILE, WEIGHTS_FILE, ModelSpec, load_model

__all__ = ["bundle_inference_config", "bundle_metadata", "export_bundle"]

log = logging.getLogger(__name__)


def _normalisation(plan: Plan) -> dict[str, Any]:
    schemes = {n.scheme for n in plan.normalization}
    if len(schemes) != 1:
        raise ConfigError(
            f"plan of {plan.task_name}: channels use different normalisations {sorted(schemes)}; "
            "a bundle exports one scheme for all channels"
        )
    norm = plan.normalization[0]
    if norm.scheme == "ct":
        if len(plan.normalization) != 1:
            raise ConfigError(f"plan of {plan.task_name}: CT normalisation of several channels")
        assert norm.clip_low is not None and norm.clip_high is not None
        assert norm.mean is not None and norm.std is not None
        std = max(norm.std, 1e-8)
        return {
            "_target_": "ScaleIntensityRanged",
            "keys": "image",
            "a_min": norm.clip_low,
            "a_max": norm.clip_high,
            "b_min": (norm.clip_low - norm.mean) / std,
            "b_max": (norm.clip_high - norm.mean) / std,
            "clip": True,
        }
    return {
        "_target_": "NormalizeIntensityd",
        "keys": "image",
        "nonzero": any(n.use_nonzero_mask for n in plan.normalization),
        "channel_wise": True,
    }


def bundle_inference_config(spec: ModelSpec) -> dict[str, Any]:
    """``configs/inference.json`` for ``spec`` (see the module docstring)."""
    plan = spec.load_plan()
    return {
        "imports": ["$import glob", "$import os", "$import torch", "$import monai"],
        "bundle_root": ".",
        "dataset_dir": "$@bundle_root + '/images'",
        "output_dir": "$@bundle_root + '/eval'",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "datalist": "$sorted(glob.glob(os.path.join(@dataset_dir, '*.nii.gz')))",
        "network_def": {
            "_target_": "nasmed.export.bundle_net.bundle_network",
            "spec": "$os.path.join(@bundle_root, 'configs', 'model.json')",
        },
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {
                    "_target_": "LoadImaged",
                    "keys": "image",
                    "reader": "NibabelReader",
                    "ensure_channel_first": True,
                    "dtype": "float32",
                },
                {
                    "_target_": "Orientationd",
                    "keys": "image",
                    "axcodes": plan.orientation,
                },
                {
                    "_target_": "CropForegroundd",
                    "keys": "image",
                    "source_key": "image",
                    "select_fn": "$lambda x: x != 0",
                    "allow_smaller": True,
                },
                _normalisation(plan),
                {
                    "_target_": "Spacingd",
                    "keys": "image",
                    "pixdim": list(plan.target_spacing),
                    "mode": int(plan.image_order),
                    "padding_mode": "nearest",
                },
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "float32"},
            ],
        },
        "dataset": {
            "_target_": "Dataset",
            "data": "$[{'image': f} for f in @datalist]",
            "transform": "@preprocessing",
        },
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": 0,
        },
        "inferer": {
            "_target_": "SlidingWindowInferer",
            "roi_size": list(spec.patch),
            "sw_batch_size": 2,
            "overlap": 0.5,
            "mode": "gaussian",
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "image",
                    "nearest_interp": False,
                    "to_tensor": True,
                },
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {
                    "_target_": "SaveImaged",
                    "keys": "pred",
                    "output_dir": "@output_dir",
                    "output_postfix": "",
                    "separate_folder": False,
                    "resample": False,
                    "output_dtype": "uint8",
                    "print_log": False,
                },
            ],
        },
        "initialize": [
            "$torch.set_grad_enabled(False)",
            "$@network.load_state_dict(torch.load(os.path.join(@bundle_root, 'models', "
            "'model.pt'), map_location=@device, weights_only=True))",
            "$@network.eval()",
        ],
        "run": [
            "$[[@postprocessing(d) for d in monai.data.decollate_batch({**b, 'pred': "
            "@inferer(b['image'].to(@device), @network)})] for b in @dataloader]"
        ],
    }


def bundle_metadata(spec: ModelSpec) -> dict[str, Any]:
    """``configs/metadata.json`` for ``spec``."""
    plan = spec.load_plan()
    labels = {str(k): v for k, v in sorted(plan.labels.items())}
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
        "0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": "exported by nasmed export bundle"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"nasmed": nasmed.__version__},
        "name": f"nasmed {spec.arch if spec.arch != 'genotype' else 'genotype'} {plan.task_name}",
        "task": f"{plan.task_name} segmentation",
        "description": f"A {spec.arch} network trained by nasmed on {plan.task_name}.",
        "authors": "nasmed",
        "copyright": "see the training data's licence",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "/".join(plan.modalities),
                    "num_channels": spec.in_channels,
                    "spatial_shape": list(spec.patch),
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": True,
                    "channel_def": {str(i): m for i, m in enumerate(plan.modalities)},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": spec.out_channels,
                    "spatial_shape": list(spec.patch),
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": True,
                    "channel_def": labels,
                }
            },
        },
    }


def export_bundle(run_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the MONAI bundle of ``run_dir`` into ``out`` (a new or empty folder).

    Raises:
        RunDirError: not a finished run folder. ConfigError: ``out`` is not empty, or the
            plan cannot be expressed (mixed normalisation schemes).
    """
    run = Path(run_dir)
    spec, _ = load_model(run)  # the weights must load into the network
    inference = bundle_inference_config(spec)
    metadata = bundle_metadata(spec)
    with staged_dir(out) as tmp:
        (tmp / "configs").mkdir()
        (tmp / "models").mkdir()
        for name, data in (("inference.json", inference), ("metadata.json", metadata)):
            (tmp / "configs" / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(run / MODEL_FILE, tmp / "configs" / "model.json")
        shutil.copyfile(run / WEIGHTS_FILE, tmp / "models" / "model.pt")
    log.info("%s: MONAI bundle of %s", out, run)
    return Path(out)
