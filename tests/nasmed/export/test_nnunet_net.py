"""``NasmedNnUNet`` built by nnU-Net v2's own ``get_network_from_plans``, as its trainer uses it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import searchspaces
from nasmed.errors import ConfigError
from nasmed.export.nnunet_net import NNUNET_CLASS_NAME, genotype_strides
from nasmed.export.nnunet_plans import genotype_architecture
from nasmed.supernet import sample_genotype

pytest.importorskip("nnunetv2")
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager


@pytest.mark.parametrize("space", ["scnas-small", "scnas"])
def test_deep_supervision_matches_nnunet_scales(space: str) -> None:
    genotype = sample_genotype(searchspaces.load(space), 3)
    arch = genotype_architecture(genotype, width=0.25)
    config = ConfigurationManager({"architecture": arch, "patch_size": [32, 32, 32]})
    net = get_network_from_plans(
        config.network_arch_class_name,
        config.network_arch_init_kwargs,
        config.network_arch_init_kwargs_req_import,
        1,
        3,
        deep_supervision=True,
    )
    assert type(net).__module__ + "." + type(net).__name__ == NNUNET_CLASS_NAME
    fake = SimpleNamespace(enable_deep_supervision=True, configuration_manager=config)
    scales = nnUNetTrainer._get_deep_supervision_scales(fake)  # nnU-Net's own code
    x = torch.randn(2, 1, 32, 32, 32)
    net.train()
    outputs = net(x)
    assert isinstance(outputs, list) and len(outputs) == len(scales)
    for out, scale in zip(outputs, scales):
        assert tuple(out.shape) == (2, 3, *(round(32 * s) for s in scale))
    # the switch nnU-Net's trainer toggles (set_deep_supervision_enabled)
    net.decoder.deep_supervision = False
    full = net(x)
    assert isinstance(full, torch.Tensor) and full.shape == (2, 3, 32, 32, 32)
    net.eval()
    net.decoder.deep_supervision = True
    with torch.no_grad():
        assert len(net(x)) == len(scales)  # nnU-Net validates with deep supervision in eval


def test_strides_must_match_the_genotype() -> None:
    genotype = sample_genotype(searchspaces.load("scnas-small"), 0)
    strides = genotype_strides(genotype)
    assert strides == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]  # stride-2 stem + 2 levels
    arch = genotype_architecture(genotype)
    kwargs = {**arch["arch_kwargs"], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]}
    with pytest.raises(ConfigError, match="do not match the genotype"):
        get_network_from_plans(arch["network_class_name"], kwargs, ["conv_op"], 1, 2)
