"""A source nnU-Net v2 plans file as ``nnUNetv2_plan_and_preprocess`` writes it (trimmed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plain_unet_plans(dataset: str = "Dataset077_Synth") -> dict[str, Any]:
    """Plans with a ``3d_fullres`` PlainConvUNet (anisotropic first pooling) and a ``3d_lowres``
    that inherits from it."""
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 4,
            "features_per_stage": [8, 16, 32, 64],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
            "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
            "n_conv_per_stage": [2, 2, 2, 2],
            "n_conv_per_stage_decoder": [2, 2, 2],
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    return {
        "dataset_name": dataset,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [2.3, 0.96, 0.96],
        "original_median_shape_after_transp": [24, 32, 32],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [2, 0, 1],
        "transpose_backward": [1, 2, 0],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": [20, 36, 32],
                "median_image_size_in_voxels": [24.0, 32.0, 32.0],
                "spacing": [2.3, 0.96, 0.96],
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "architecture": arch,
                "batch_dice": False,
            },
            "3d_lowres": {"inherits_from": "3d_fullres", "data_identifier": "lowres"},
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {},
    }


def write_preprocessed(root: Path, dataset_id: int = 77) -> Path:
    """``root/Dataset0XX_Synth/nnUNetPlans.json``; returns the dataset folder."""
    folder = root / f"Dataset{dataset_id:03d}_Synth"
    folder.mkdir(parents=True)
    (folder / "nnUNetPlans.json").write_text(json.dumps(plain_unet_plans(folder.name)))
    return folder
