"""Write the notebooks in ``notebooks/`` (without outputs) from the cell sources below.

Run ``python docs/make_notebooks.py`` after editing a cell here; ``tests/test_notebooks.py``
checks that the committed notebooks are what this script writes, and executes them.

Every notebook starts with a parameters cell: small defaults that run on a laptop CPU in a
minute or two. ``NASMED_NB_QUICK=1`` (the test suite) makes them smaller still, and
``NASMED_NB_OUT`` chooses the output folder (default: a new temporary folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

Cell = tuple[str, str] | tuple[str, str, list[str]]


def _prelude(name: str, real: str) -> str:
    """The common head of every parameters cell."""
    return f"""# Parameters: small defaults that run on a laptop CPU in a minute or two.
# For real data on a GPU, change them, for example:
{real}
import os
import tempfile
from pathlib import Path

QUICK = os.environ.get("NASMED_NB_QUICK") == "1"  # the test suite: smaller still
OUT = Path(os.environ.get("NASMED_NB_OUT") or tempfile.mkdtemp(prefix="nasmed_{name}_"))
"""


TOUR: list[Cell] = [
    (
        "md",
        """# 01 · A tour of a Decathlon task

The Medical Segmentation Decathlon (MSD) stores a task as `dataset.json`, `imagesTr/`,
`labelsTr/` and `imagesTs/` (NIfTI). This notebook writes a small synthetic task in that format
(or reads yours), validates it, looks at cases and labels with proper CT windowing, and shows
the dataset fingerprint and the preprocessing plan derived from it — all with the `decathlon`
package, which knows nothing of NAS.""",
    ),
    (
        "code",
        _prelude(
            "01",
            '#   TASK_DIR = "/data/Task09_Spleen"  # an MSD task folder (CT)\n'
            '#   CASE = "spleen_10"',
        )
        + """TASK_DIR = None  # None: write a small synthetic CT task into OUT
CASE = None  # None: the first training case
SHAPE = (32, 32, 20) if QUICK else (64, 64, 40)
CASES = 3 if QUICK else 6
""",
        ["parameters"],
    ),
    (
        "code",
        """%matplotlib inline
import json

from decathlon import load_task, read_case, validate_task, write_synthetic_task
from decathlon.fingerprint import fingerprint_task
from decathlon.plan import make_plan
from nasmed.viz import new_figure, plot_case, plot_modalities, plot_orthogonal, slice_viewer""",
    ),
    ("md", "## The task on disk"),
    (
        "code",
        """if TASK_DIR is None:
    TASK_DIR = write_synthetic_task(
        OUT / "Task00_Synthetic", cases=CASES, shape=SHAPE, classes=2, test_cases=1
    )
for path in sorted(Path(TASK_DIR).rglob("*"))[:12]:
    print(path.relative_to(TASK_DIR))
meta = json.loads((Path(TASK_DIR) / "dataset.json").read_text())
print({k: meta[k] for k in ("name", "modality", "labels", "numTraining", "numTest")})""",
    ),
    (
        "md",
        """## Validate and summarise

`validate_task` reads every file (headers, affines, label values) and lists every problem
at once; `nasmed inspect TASK_DIR` prints the same table.""",
    ),
    (
        "code",
        """report = validate_task(TASK_DIR)
print("valid" if report.ok else "\\n".join(report.problems))
print(report.summary.table())
task = load_task(TASK_DIR)""",
    ),
    (
        "md",
        """## Look at a case

Cases are brought to RAS orientation before drawing, so every case shows the same way round
(the synthetic cases cycle through RAS, LPS, LAS, LPI and oblique affines). Views are
radiological (patient right on the left); voxel spacing sets the aspect. CT uses the abdominal
soft-tissue window W400/L40 by default; the crosshairs mark where the other two views cut.""",
    ),
    ("code", "plot_case(task, CASE)", ["gallery"]),
    (
        "md",
        "The same case through other CT windows: bone (W1800/L400) and lung (W1500/L-600).",
    ),
    (
        "code",
        """case = task.case(CASE) if CASE else task.training[0]
image, label = read_case(case, num_channels=task.num_channels, labels=task.labels)
plot_orthogonal(image, label, window="bone", title=f"{case.name}, bone window", alpha=0.0)""",
    ),
    (
        "md",
        """With `ipywidgets` installed (`pip install -e .[notebooks]`), `slice_viewer` gives
sliders for the cut point, the window and the overlay's opacity; without it, the static
figure.""",
    ),
    (
        "code",
        """names = {k: v for k, v in task.labels.items() if k}
slice_viewer(image, label, modality=task.modalities[0], label_names=names)""",
    ),
    (
        "md",
        """## Several modalities

Multi-modal MSD tasks (BrainTumour, Prostate) store the channels as the 4th dimension of one
NIfTI. Each MR channel gets its own window (0.5–99.5 percentiles); the label is outlined.""",
    ),
    (
        "code",
        """mr_dir = write_synthetic_task(
    OUT / "Task00_SyntheticMR", cases=1, shape=SHAPE, classes=2, modalities=3, test_cases=0
)
mr = load_task(mr_dir)
mr_image, mr_label = read_case(mr.training[0])
plot_modalities(mr_image, mr_label, modalities=mr.modalities, label_names=mr.labels)""",
    ),
    (
        "md",
        """## Fingerprint and plan

The fingerprint records every case's spacing, shape, shape after cropping to the non-zero
region and voxels per class, and the foreground intensities per channel. The plan follows
nnU-Net: the median spacing as the target (the slice axis from a lower percentile when the data
are anisotropic), CT clipped to the 0.5–99.5 foreground percentiles then z-scored, and the
largest patch that fits the memory budget.""",
    ),
    (
        "code",
        """fingerprint = fingerprint_task(task, workers=1)
spacings = fingerprint.spacings
fig, axes = new_figure(1, 2, size=(8, 3))
axes[0, 0].scatter(spacings[:, 0], spacings[:, 2])
axes[0, 0].set(xlabel="in-plane spacing (mm)", ylabel="slice spacing (mm)")
axes[0, 0].set_title("spacing per case")
voxels = {
    task.labels[k]: sum(c.class_voxels.get(k, 0) for c in fingerprint.cases)
    for k in task.foreground_labels
}
axes[0, 1].bar(list(voxels), list(voxels.values()))
axes[0, 1].set(ylabel="voxels", title="foreground voxels per class")
fig""",
    ),
    (
        "code",
        """plan = make_plan(fingerprint)
print(json.dumps(plan.to_json(), indent=1))""",
    ),
]

SEARCH: list[Cell] = [
    (
        "md",
        """# 02 · A short architecture search

A bilevel search on a U-Net of searchable cells: each step trains the network weights on one
half of the training cases and the architecture logits on the other. Each forward pass draws a
hard Gumbel-softmax sample per edge — only the sampled operation runs — with the soft
relaxation's gradient; the temperature anneals so the samples grow more decisive. We watch the
logits and the temperature, draw the genotype found, and look at its cost.""",
    ),
    (
        "code",
        _prelude(
            "02",
            '#   TASK_DIR = "/data/Task09_Spleen"; SPACE = "scnas"; EPOCHS = 50; WARMUP = 10\n'
            '#   STEPS = 100; PATCH = (96, 96, 96); ARCH_LR = 3e-3; DEVICE = "cuda"',
        )
        + """TASK_DIR = None  # None: the embedded synthetic CT task (QUICK: a smaller one)
SPACE = "scnas-small"
EPOCHS = 2 if QUICK else 10
WARMUP = 1
STEPS = 1 if QUICK else 6
PATCH = (32, 32, 32)
ARCH_LR = 0.05  # large, so that a search this short visibly moves the logits
DEVICE = "cpu"
SEED = 0
""",
        ["parameters"],
    ),
    (
        "code",
        """%matplotlib inline
import numpy as np
import torch

import searchspaces
from decathlon import load_task, write_synthetic_task
from nasmed.models.factory import build_model
from nasmed.search.loop import SearchConfig, run_search
from nasmed.supernet import sample_genotype
from nasmed.supernet.cost import architecture_cost
from nasmed.supernet.describe import format_cost
from nasmed.viz import (
    alpha_viewer,
    load_alpha_snapshots,
    new_figure,
    plot_alpha_heatmaps,
    plot_genotype,
    plot_search_history,
)

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
space = searchspaces.load(SPACE)
print(f"{space.name}: {space.size():.3g} architectures, ops {', '.join(space.ops)}")
if TASK_DIR is None and QUICK:
    TASK_DIR = write_synthetic_task(OUT / "task", cases=4, shape=(32, 32, 24), test_cases=0)""",
    ),
    ("md", "## Search"),
    (
        "code",
        """config = SearchConfig(
    space=SPACE, epochs=EPOCHS, warmup_epochs=WARMUP, steps_per_epoch=STEPS, patch=PATCH,
    batch_size=1, arch_lr=ARCH_LR, tau_start=5.0, tau_end=0.5, val_every=EPOCHS, seed=SEED,
)
result = run_search(TASK_DIR, OUT / "search", config, device=DEVICE, progress=False)
print(f"{result.seconds:.0f} s; validation Dice of the argmax architecture {result.val_dice:.3f}")
print(sorted(p.name for p in result.run_dir.iterdir()))""",
    ),
    (
        "md",
        """## Temperature, entropy, losses

`history.csv` has one row per epoch: the temperature `tau` (linear from 5 to 0.5 after the
warm-up), the mean entropy of the op and input choices (it falls as the logits grow
decisive), the weights' and architecture losses, the argmax child's validation Dice, and the
expected cost of the sampled child (`val_every=EPOCHS` validates after the last epoch only).""",
    ),
    ("code", "plot_search_history(result.run_dir)"),
    (
        "md",
        """## The logits over the search

One heatmap per cell type and epoch: the probability of each operation on each edge
(`softmax` of its logits); the row label adds the probability that the edge is kept at all;
black boxes mark the decoded architecture (each node keeps its most likely inputs, each kept
edge its most likely operation). The colour scale ends at the largest probability shown.""",
    ),
    (
        "code",
        """snapshots = load_alpha_snapshots(result.run_dir)
plot_alpha_heatmaps(snapshots, max_epochs=3)""",
        ["gallery"],
    ),
    ("code", "alpha_viewer(snapshots)  # a slider over the epochs with ipywidgets"),
    ("md", "## The genotype found"),
    (
        "code",
        """genotype = result.genotype
print(genotype.to_text())
plot_genotype(genotype)""",
    ),
    (
        "md",
        """## Its cost

The operations declare their cost (parameters, FLOPs, activation memory per voxel), so the
cost of any architecture of the space is known without building it. Here the found one
against 200 random architectures of the same space, and a MONAI U-Net for scale.""",
    ),
    (
        "code",
        """task = load_task(result.genotype.search.get("task") or TASK_DIR)
k = task.num_classes
found = architecture_cost(genotype, space, task.num_channels, k, PATCH)
print("found:", format_cost(found))
randoms = [
    architecture_cost(sample_genotype(space, s), space, task.num_channels, k, PATCH)
    for s in range(200)
]
unet = build_model("unet", task.num_channels, k, patch=PATCH)
unet_params = sum(p.numel() for p in unet.parameters())
net = build_model(genotype, task.num_channels, k, patch=PATCH)
print(f"derived network: {sum(p.numel() for p in net.parameters()):,} parameters")
print(f"MONAI UNet: {unet_params:,} parameters")
fig, axes = new_figure(1, 2, size=(8, 3))
for ax, values, mark, label in (
    (axes[0, 0], [c.params / 1e3 for c in randoms], found.params / 1e3, "parameters (k)"),
    (axes[0, 1], [c.flops / 1e9 for c in randoms], found.flops / 1e9, "GFLOPs per forward"),
):
    ax.hist(values, bins=20, color="#bbbbbb", label="random architectures")
    ax.axvline(mark, color="C3", lw=2, label="found")
    ax.set_xlabel(label)
axes[0, 0].legend(fontsize=7)
fig""",
    ),
]

NOTEBOOKS_SPEC: dict[str, list[Cell]] = {
    "01_decathlon_tour": TOUR,
    "02_search": SEARCH,
}


def build(name: str, cells: list[Cell]) -> nbformat.NotebookNode:
    """The notebook ``name`` (no outputs, python3 kernel)."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(cells):
        kind, source = cell[0], cell[1]
        tags = list(cell[2]) if len(cell) > 2 else []  # type: ignore[misc]
        made = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        made["id"] = f"{name[:2]}-{i:02d}"
        if tags:
            made.metadata["tags"] = tags
        nb.cells.append(made)
    return nb


def render(name: str) -> str:
    """The notebook's file content."""
    return nbformat.writes(build(name, NOTEBOOKS_SPEC[name])) + "\n"


def main() -> int:
    NOTEBOOKS.mkdir(exist_ok=True)
    for name in NOTEBOOKS_SPEC:
        path = NOTEBOOKS / f"{name}.ipynb"
        path.write_text(render(name), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
