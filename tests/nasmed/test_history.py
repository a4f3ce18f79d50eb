from __future__ import annotations

from pathlib import Path

from nasmed.train.history import History, read_history


def test_history_writes_and_resumes(tmp_path: Path) -> None:
    h = History(tmp_path, tensorboard=True)
    for epoch in range(3):
        h.log({"epoch": epoch, "loss": 1.0 / (epoch + 1), "note": "x"})
    h.close()
    rows = read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[1]["loss"] == 0.5 and rows[0]["note"] == "x"
    assert any((tmp_path / "tensorboard").iterdir())
    # resuming at epoch 2 drops the row of epoch 2, which will be redone
    h2 = History(tmp_path, resume_epoch=2, tensorboard=False)
    h2.log({"epoch": 2, "loss": 0.25, "dice": 0.7})
    rows = read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[2]["loss"] == 0.25 and rows[2]["dice"] == 0.7 and rows[0]["dice"] is None
