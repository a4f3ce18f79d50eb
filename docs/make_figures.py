"""``make figures``: run every notebook and keep one rendered image of each in docs/gallery/.

Each notebook marks one cell with the tag ``gallery``; this script executes the notebook
headless (nbclient, the python3 kernel of this interpreter) with its default parameters — the
small laptop settings, not the test suite's quicker ones — and writes that cell's figure to
``docs/gallery/<notebook>.png``, then ``docs/gallery.md`` showing them all.

    python docs/make_figures.py            # every notebook
    python docs/make_figures.py 02_search  # some of them
    python docs/make_figures.py --quick    # the test suite's tiny settings (NASMED_NB_QUICK=1)
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from decathlon.fsutil import atomic_open, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
GALLERY = ROOT / "docs" / "gallery"

CAPTIONS = {
    "01_decathlon_tour": (
        "A synthetic CT case in RAS orientation: sagittal, coronal and axial slices through the "
        "lesion, abdominal soft-tissue window W400/L40, organ (red) and lesion "
        "(green) overlaid; the crosshairs mark the other two cuts, the letters the patient's "
        "sides (radiological view: the patient's right on the left)."
    ),
    "02_search": (
        "Architecture logits over a short search on the embedded task (scnas-small): per cell "
        "type and epoch, the probability of each operation on each edge, the probability that "
        "the edge is kept in the row label, and the decoded architecture boxed. The first row "
        "is the uniform start (after the warm-up epoch); later rows move apart."
    ),
    "03_transfer": (
        "Training loss and validation Dice of one architecture (6 epochs x 6 steps): trained on "
        "a source task, then fine-tuned on a target task with another organ (transfer) or "
        "trained there from scratch with the same settings and seed. The transferred weights "
        "start at a validation Dice near 0.7; from scratch stays below 0.1 in this budget."
    ),
    "04_pipeline": (
        "A genotype network flattened for GPipe and cut into two partitions: each layer's share "
        "of the profiled cost (mean of time and memory shares) coloured by partition, each "
        "partition's share against the ideal half, and its memory (weights x3, activations) "
        "and forward+backward time."
    ),
    "05_slices": (
        "SAOL attention of the slice classifier (90 s AutoCLINT run, input 64, 8x8 attention) "
        "over test slices that show a structure; the overlay fades where the attention is low, "
        "the labelled structures are outlined in white, titles give each class's predicted "
        "probability / target. On this synthetic task the attention settles on one side of the "
        "body rather than on the outlined organ: slice-level labels alone do not force it onto "
        "the structure."
    ),
}


def gallery_png(nb: nbformat.NotebookNode) -> bytes:
    """The PNG of the executed cell tagged ``gallery`` (its last image output)."""
    for cell in nb.cells:
        if "gallery" in cell.metadata.get("tags", []):
            images = [
                o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})
            ]
            if images:
                return base64.b64decode(images[-1])
            raise RuntimeError("the cell tagged 'gallery' shows no figure")
    raise RuntimeError("no cell is tagged 'gallery'")


def run(name: str, quick: bool) -> tuple[bytes, float]:
    """Execute notebook ``name``; returns its gallery PNG and the seconds it took."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    with tempfile.TemporaryDirectory(prefix=f"nasmed_fig_{name}_") as out:
        os.environ["NASMED_NB_OUT"] = out
        os.environ["NASMED_NB_QUICK"] = "1" if quick else "0"
        start = time.perf_counter()
        NotebookClient(
            nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": out}}
        ).execute()
        return gallery_png(nb), time.perf_counter() - start


def write_markdown(names: list[str]) -> None:
    lines = [
        "# Gallery",
        "",
        "One picture from each notebook in `notebooks/`, rendered by `make figures`",
        "(`docs/make_figures.py`: it executes each notebook with its default parameters and keeps",
        "the figure of the cell tagged `gallery`). Synthetic data and CPU-sized runs: the",
        "pictures show what the tools draw, not results to quote.",
        "",
    ]
    for name in names:
        lines += [f"## {name}", "", f"![{name}](gallery/{name}.png)", "", CAPTIONS[name], ""]
    atomic_write_text(ROOT / "docs" / "gallery.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="the test suite's tiny settings")
    args = parser.parse_args(argv)
    every = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    unknown = sorted(set(args.names) - set(every))
    if unknown:
        print(f"make_figures: error: no notebook {unknown[0]!r}; have {every}", file=sys.stderr)
        return 2
    GALLERY.mkdir(parents=True, exist_ok=True)
    for name in args.names or every:
        png, seconds = run(name, args.quick)
        with atomic_open(GALLERY / f"{name}.png", "wb") as f:
            f.write(png)
        print(f"{name}: {len(png) // 1024} KiB in {seconds:.0f} s")
    write_markdown([n for n in every if (GALLERY / f"{n}.png").is_file()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
