"""Per-epoch history: ``history.csv`` (rewritten atomically) and TensorBoard scalars."""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any

from decathlon.fsutil import atomic_write_text

__all__ = ["History", "read_history"]

log = logging.getLogger(__name__)


def read_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``history.csv`` with numbers parsed (empty cells become None)."""
    p = Path(path)
    if not p.is_file():
        return []
    rows: list[dict[str, Any]] = []
    with p.open(newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None):
                    row[key] = None
                    continue
                try:
                    num = float(value)
                    row[key] = int(num) if num.is_integer() and "." not in value else num
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


class History:
    """Collects one row per epoch; writes ``history.csv`` and TensorBoard events.

    Args:
        run_dir: the run folder; ``history.csv`` and ``tensorboard/`` go there.
        resume_epoch: when resuming, rows of epochs >= this are dropped (they are redone).
        tensorboard: write TensorBoard events (``tensorboard/``).
    """

    def __init__(
        self, run_dir: str | os.PathLike[str], *, resume_epoch: int = 0, tensorboard: bool = True
    ) -> None:
        self.path = Path(run_dir) / "history.csv"
        self.rows = [r for r in read_history(self.path) if int(r.get("epoch", 0)) < resume_epoch]
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(
                    log_dir=str(Path(run_dir) / "tensorboard"), purge_step=resume_epoch or None
                )
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                log.warning("tensorboard is not installed; no events are written")

    def log(self, row: dict[str, Any]) -> None:
        """Append one epoch's row (must contain ``epoch``) and rewrite the CSV atomically."""
        if "epoch" not in row:
            raise ValueError("a history row needs an 'epoch' value")
        self.rows.append(dict(row))
        fields: list[str] = []
        for r in self.rows:
            fields.extend(k for k in r if k not in fields)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
        atomic_write_text(self.path, buf.getvalue())
        if self._tb is not None:
            step = int(row["epoch"])
            for key, value in row.items():
                if (
                    key != "epoch"
                    and isinstance(value, (int, float))
                    and not isinstance(value, bool)
                ):
                    self._tb.add_scalar(key.replace(".", "/"), float(value), step)
            self._tb.flush()

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
