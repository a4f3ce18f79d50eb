"""nasmed: neural architecture search for 3D medical image segmentation.

Search encoder–decoder cells with Gumbel-softmax sampling on Medical Segmentation Decathlon
tasks, retrain and transfer what is found, pipeline large volumes across devices, and classify
2D slices. The data layer lives in the separate package :mod:`decathlon`, the search spaces in
:mod:`searchspaces`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"
