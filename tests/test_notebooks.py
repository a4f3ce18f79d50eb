"""Every notebook in ``notebooks/`` runs headless without an error (nbclient, python3 kernel).

The notebooks read ``NASMED_NB_QUICK=1`` (tinier parameters) and ``NASMED_NB_OUT`` (where they
write) in their parameters cell. The kernel is the interpreter running the tests (jupyter_client
starts ``python`` kernels with ``sys.executable``), so a fresh ``pip install -e .[test]`` is enough.
The committed notebooks have no outputs and equal what ``docs/make_notebooks.py`` writes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_notebooks", ROOT / "docs" / "make_notebooks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_is_there() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names == sorted(_generator().NOTEBOOKS_SPEC)
    assert names[0] == "01_decathlon_tour"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_up_to_date(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs"
    assert "parameters" in nb.cells[1].metadata.get("tags", []), "parameters cell first"
    assert path.read_text(encoding="utf-8") == _generator().render(path.stem), (
        f"{path.name} differs from docs/make_notebooks.py; run it"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASMED_NB_QUICK", "1")
    monkeypatch.setenv("NASMED_NB_OUT", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    images = [
        out
        for cell in nb.cells
        if "gallery" in cell.metadata.get("tags", [])
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    assert images, f"{path.name}: the cell tagged 'gallery' shows no figure"
