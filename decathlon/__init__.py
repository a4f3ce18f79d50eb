"""The Medical Segmentation Decathlon data layer, usable on its own (no NAS imports).

Read and validate MSD task folders (and nnU-Net v2 raw folders), read and write images with
their geometry, fingerprint and preprocess the way nnU-Net does, sample patches, make splits,
and write synthetic MSD-format tasks for tests and demos.
"""

from __future__ import annotations

from decathlon.datalist import Case, Task, load_task, read_case
from decathlon.errors import DatasetError, DecathlonError, ImageReadError, ValidationError
from decathlon.io import Geometry, Image, read_geometry, read_image, write_image
from decathlon.synthetic import embedded_task, write_synthetic_task
from decathlon.tasks import MSD_TASKS, MSDTask, msd_task
from decathlon.validate import Report, validate_task

__all__ = [
    "MSD_TASKS",
    "Case",
    "DatasetError",
    "DecathlonError",
    "Geometry",
    "Image",
    "ImageReadError",
    "MSDTask",
    "Report",
    "Task",
    "ValidationError",
    "embedded_task",
    "load_task",
    "msd_task",
    "read_case",
    "read_geometry",
    "read_image",
    "validate_task",
    "write_image",
    "write_synthetic_task",
]
