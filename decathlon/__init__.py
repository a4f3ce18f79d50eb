"""The Medical Segmentation Decathlon data layer, usable on its own (no NAS imports).

Read and validate MSD task folders (and nnU-Net v2 raw folders), read and write images with
their geometry, fingerprint and preprocess the way nnU-Net does, sample patches, make splits,
and write synthetic MSD-format tasks for tests and demos.
"""

from __future__ import annotations

from decathlon.errors import DatasetError, DecathlonError, ImageReadError, ValidationError
from decathlon.io import Geometry, Image, read_geometry, read_image, write_image

__all__ = [
    "DatasetError",
    "DecathlonError",
    "Geometry",
    "Image",
    "ImageReadError",
    "ValidationError",
    "read_geometry",
    "read_image",
    "write_image",
]
