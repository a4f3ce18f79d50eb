"""The ``network_def`` of an exported MONAI bundle: the network rebuilt from its ``model.json``.

A bundle's ``configs/inference.json`` names :func:`bundle_network` with the path of the bundle's
own copy of the run's ``model.json``, so the network definition is importable from nasmed and
the bundle needs no pickled module. The weights come from ``models/model.pt`` (a state dict).
"""

from __future__ import annotations

import os

from torch import nn

from nasmed.models.spec import ModelSpec

__all__ = ["bundle_network"]


def bundle_network(spec: str | os.PathLike[str]) -> nn.Module:
    """A fresh (untrained) network of the ``model.json`` at ``spec``; load the weights after."""
    return ModelSpec.load(spec).build()
