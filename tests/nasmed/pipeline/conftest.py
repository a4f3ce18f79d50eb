"""Tiny networks of the pipeline tests: a genotype network of ``scnas-small`` and MONAI's UNet."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from torch import nn

import searchspaces
from nasmed.genotype import Genotype
from nasmed.models.baselines import make_unet
from nasmed.models.derived import DerivedNet
from nasmed.supernet import sample_genotype

PATCH = (16, 16, 16)


@pytest.fixture(scope="session")
def genotype() -> Genotype:
    return sample_genotype(searchspaces.load("scnas-small"), 3)


@pytest.fixture()
def make_net(genotype: Genotype) -> Callable[[str], nn.Module]:
    """``make_net("derived" | "derived_ds" | "unet")``: a fresh tiny network (1 -> 2 channels)."""

    def make(kind: str) -> nn.Module:
        if kind == "unet":
            return make_unet(1, 2, width=0.5, patch=PATCH)
        space = searchspaces.load("scnas-small")
        return DerivedNet(genotype, space, 1, 2, deep_supervision=kind == "derived_ds")

    return make
