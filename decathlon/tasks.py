"""The ten Medical Segmentation Decathlon tasks as typed metadata, recognised by name.

``msd_task("Task09_Spleen")``, ``msd_task("Spleen")``, ``msd_task("spleen")``, ``msd_task("09")``,
``msd_task(9)`` and ``msd_task("/data/Task09_Spleen")`` all give the same :class:`MSDTask`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decathlon.datalist import Task

__all__ = ["MSD_TASKS", "MSDTask", "compare_with_msd", "msd_task"]


@dataclass(frozen=True)
class MSDTask:
    """Metadata of one official MSD task.

    Args:
        id: the task number, 1..10.
        name: ``"Spleen"``, ``"BrainTumour"``, ...
        modalities: channel names, index = channel, as in the official ``dataset.json``.
        labels: foreground label names, label value = index + 1 (background is 0).
        num_training: training cases in the official release.
        num_test: test cases in the official release.
    """

    id: int
    name: str
    modalities: tuple[str, ...]
    labels: tuple[str, ...]
    num_training: int
    num_test: int

    @property
    def folder(self) -> str:
        """The official folder name, ``"Task09_Spleen"``."""
        return f"Task{self.id:02d}_{self.name}"

    @property
    def label_map(self) -> dict[int, str]:
        """Label value -> name including ``0: "background"``."""
        return {0: "background", **{i + 1: n for i, n in enumerate(self.labels)}}

    @property
    def num_classes(self) -> int:
        """Classes including background."""
        return len(self.labels) + 1


MSD_TASKS: tuple[MSDTask, ...] = (
    MSDTask(
        1,
        "BrainTumour",
        ("FLAIR", "T1w", "t1gd", "T2w"),
        ("edema", "non-enhancing tumor", "enhancing tumour"),
        484,
        266,
    ),
    MSDTask(2, "Heart", ("MRI",), ("left atrium",), 20, 10),
    MSDTask(3, "Liver", ("CT",), ("liver", "cancer"), 131, 70),
    MSDTask(4, "Hippocampus", ("MRI",), ("Anterior", "Posterior"), 260, 130),
    MSDTask(5, "Prostate", ("T2", "ADC"), ("PZ", "TZ"), 32, 16),
    MSDTask(6, "Lung", ("CT",), ("cancer",), 63, 32),
    MSDTask(7, "Pancreas", ("CT",), ("pancreas", "cancer"), 281, 139),
    MSDTask(8, "HepaticVessel", ("CT",), ("Vessel", "Tumour"), 303, 140),
    MSDTask(9, "Spleen", ("CT",), ("spleen",), 41, 20),
    MSDTask(10, "Colon", ("CT",), ("colon cancer primaries",), 126, 64),
)

_FOLDER_RE = re.compile(r"^task0*(?P<id>\d+)(?:_(?P<name>.*))?$", re.IGNORECASE)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def msd_task(name_or_folder: str | int | os.PathLike[str]) -> MSDTask | None:
    """The MSD task named by a folder, a task name or a number; ``None`` if it is none of them."""
    if isinstance(name_or_folder, int):
        return next((t for t in MSD_TASKS if t.id == name_or_folder), None)
    text = Path(name_or_folder).name.strip() or str(name_or_folder).strip()
    if text.isdigit():
        return msd_task(int(text))
    m = _FOLDER_RE.match(text)
    if m:
        task = msd_task(int(m["id"]))
        if task is not None and (not m["name"] or _norm(m["name"]) == _norm(task.name)):
            return task
        return None
    key = _norm(text)
    return next((t for t in MSD_TASKS if _norm(t.name) == key), None)


def compare_with_msd(task: Task, msd: MSDTask) -> list[str]:
    """Warnings where a parsed task disagrees with the official metadata of ``msd``.

    Only structure is compared (channel count, label values and names); case counts differ
    legitimately (subsets), so they are not warned about.
    """
    where = task.dataset_json
    out = []
    if task.num_channels != len(msd.modalities):
        out.append(
            f"{where}: {task.num_channels} modalities, but MSD {msd.folder} has "
            f"{len(msd.modalities)} ({', '.join(msd.modalities)})"
        )
    official = msd.label_map
    if sorted(task.labels) != sorted(official):
        out.append(
            f"{where}: labels {sorted(task.labels)} differ from MSD {msd.folder} {sorted(official)}"
        )
    else:
        renamed = [
            f"{v}: {task.labels[v]!r} (MSD: {official[v]!r})"
            for v in sorted(official)
            if v and _norm(task.labels[v]) != _norm(official[v])
        ]
        if renamed:
            out.append(f"{where}: label names differ from MSD {msd.folder}: {'; '.join(renamed)}")
    return out
