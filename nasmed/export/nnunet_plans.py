"""Write an nnU-Net v2 plans file whose configuration trains a genotype.

Reads ``$nnUNet_preprocessed/DatasetXXX_Name/nnUNetPlans.json`` (written by
``nnUNetv2_plan_and_preprocess``), takes the chosen configuration (inheritance resolved by
nnU-Net's own ``PlansManager``), and replaces its ``architecture`` with
:class:`~nasmed.export.nnunet_net.NasmedNnUNet`: the genotype as plain JSON, the network's real
strides, ``conv_op`` as a dotted name in ``_kw_requires_import``. The patch is fitted like the
genotype's own plan (:func:`nasmed.training.default_patch`: each side rounded down to the
space's divisor, at least one divisor). ``data_identifier`` stays the source configuration's, so
the existing preprocessed data is reused. The new file is ``<dataset>/<plans name>.json``,
written atomically; the configuration keeps its name, so training is
``nnUNetv2_train ID CONFIG FOLD -p NAME``.
"""

from __future__ import annotations

import logging
import os
import re
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_write_json
from nasmed.errors import ConfigError
from nasmed.export.deps import require
from nasmed.export.nnunet_net import NNUNET_CLASS_NAME, genotype_strides
from nasmed.genotype import Genotype, check_space, genotype_space
from nasmed.models.nnunet import load_plans_file

__all__ = [
    "DEFAULT_PLANS_NAME",
    "NnUNetExport",
    "export_nnunet_plans",
    "find_dataset",
    "genotype_architecture",
]

log = logging.getLogger(__name__)

DEFAULT_PLANS_NAME = "nasmedPlans"
SOURCE_PLANS = "nnUNetPlans"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class NnUNetExport:
    """What :func:`export_nnunet_plans` wrote.

    Attributes:
        plans_file: the new plans file.
        dataset: the dataset folder name (``DatasetXXX_Name``).
        configuration: the configuration that trains the genotype.
        plans_name: its plans identifier (``-p``).
        patch: the fitted patch.
        command: the ``nnUNetv2_train`` command line for fold 0.
    """

    plans_file: Path
    dataset: str
    configuration: str
    plans_name: str
    patch: tuple[int, ...]
    command: str


def find_dataset(dataset_id: int, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder ``DatasetXXX_*`` of ``dataset_id`` in ``root`` (default ``$nnUNet_preprocessed``).

    Raises:
        ConfigError: ``root`` is unset or missing, or holds no (or several) such folder.
    """
    if root is None:
        env = os.environ.get("nnUNet_preprocessed")  # noqa: SIM112 (nnU-Net's name)
        if not env:
            raise ConfigError(
                "nnUNet_preprocessed is not set; point it at nnU-Net's preprocessed folder "
                "(the one nnUNetv2_plan_and_preprocess wrote)"
            )
        root = env
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"{base}: nnUNet_preprocessed folder not found")
    found = sorted(base.glob(f"Dataset{int(dataset_id):03d}_*"))
    found = [p for p in found if p.is_dir()]
    if not found:
        raise ConfigError(
            f"{base}: no dataset with ID {dataset_id} (no Dataset{int(dataset_id):03d}_* folder); "
            "run nnUNetv2_plan_and_preprocess -d ID first"
        )
    if len(found) > 1:
        raise ConfigError(
            f"{base}: dataset ID {dataset_id} is ambiguous: {[p.name for p in found]}"
        )
    return found[0]


def genotype_architecture(
    genotype: Genotype, *, width: float = 1.0, spatial_dims: int = 3
) -> dict[str, Any]:
    """The plans' ``architecture`` entry that builds ``genotype`` (see the module docstring)."""
    conv = "torch.nn.modules.conv.Conv3d" if spatial_dims == 3 else "torch.nn.modules.conv.Conv2d"
    return {
        "network_class_name": NNUNET_CLASS_NAME,
        "arch_kwargs": {
            "genotype": genotype.to_dict(),
            "strides": genotype_strides(genotype, spatial_dims),
            "conv_op": conv,
            "width": float(width),
        },
        "_kw_requires_import": ["conv_op"],
    }


def _fit_patch(patch: list[int], divisor: int) -> tuple[int, ...]:
    return tuple(max(divisor, (int(p) // divisor) * divisor) for p in patch)


def export_nnunet_plans(
    genotype: Genotype | str | os.PathLike[str],
    dataset_id: int,
    *,
    configuration: str = "3d_fullres",
    plans_name: str = DEFAULT_PLANS_NAME,
    width: float = 1.0,
    preprocessed: str | os.PathLike[str] | None = None,
) -> NnUNetExport:
    """Write ``<dataset>/<plans_name>.json`` training ``genotype`` in ``configuration``.

    Args:
        genotype: a :class:`Genotype`, a ``genotype.json`` or a folder holding one.
        dataset_id: nnU-Net dataset ID.
        configuration: the configuration to train (``3d_fullres``, ``2d``, ``3d_lowres`` ...).
        plans_name: the new plans identifier.
        width: channel multiplier of the network.
        preprocessed: nnU-Net's preprocessed folder (default ``$nnUNet_preprocessed``).

    Raises:
        ConfigError: nnunetv2 is missing, the dataset or its plans or the configuration is
            missing, or the plans name is invalid. GenotypeError / SpaceError: a bad genotype.
    """
    require("nnunetv2", "nasmed export nnunet")
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if not _NAME.match(plans_name) or plans_name == SOURCE_PLANS:
        raise ConfigError(
            f"--plans-name {plans_name!r}: use letters, digits, '_', '-', '.', not {SOURCE_PLANS}"
        )
    if not width > 0:
        raise ConfigError(f"--width must be > 0, got {width}")
    if not isinstance(genotype, Genotype):
        path = Path(genotype)
        genotype = Genotype.load(path / "genotype.json" if path.is_dir() else path)
    space = genotype_space(genotype)
    check_space(genotype, space)
    folder = find_dataset(dataset_id, preprocessed)
    source = folder / f"{SOURCE_PLANS}.json"
    if not source.is_file():
        raise ConfigError(
            f"{source}: no plans; run nnUNetv2_plan_and_preprocess -d {dataset_id} first"
        )
    plans = load_plans_file(source)
    configs = plans.get("configurations") or {}
    if configuration not in configs:
        raise ConfigError(
            f"{source}: no configuration {configuration!r} (has {', '.join(configs) or 'none'})"
        )
    resolved = deepcopy(PlansManager(plans).get_configuration(configuration).configuration)
    resolved.pop("inherits_from", None)
    dims = len(resolved["patch_size"])
    patch = _fit_patch(resolved["patch_size"], space.divisor)
    resolved["patch_size"] = list(patch)
    resolved["architecture"] = genotype_architecture(genotype, width=width, spatial_dims=dims)
    out = deepcopy(plans)
    out["plans_name"] = plans_name
    out["configurations"] = {configuration: resolved}
    target = folder / f"{plans_name}.json"
    atomic_write_json(target, out, indent=4)
    command = f"nnUNetv2_train {dataset_id} {configuration} 0 -p {plans_name}"
    log.info("%s: configuration %s trains genotype of space %s", target, configuration, space.name)
    return NnUNetExport(target, folder.name, configuration, plans_name, patch, command)
