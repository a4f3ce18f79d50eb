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

TRANSFER: list[Cell] = [
    (
        "md",
        """# 03 · Train the architecture, then transfer it to another organ

A genotype is plain data: any task can rebuild its network. Here we train it on a source task,
then fine-tune those weights on a target task with another organ, and compare with training the
same architecture on the target from scratch: learning curves and validation Dice.""",
    ),
    (
        "code",
        _prelude(
            "03",
            '#   SOURCE_TASK = "/data/Task07_Pancreas"; TARGET_TASK = "/data/Task09_Spleen"\n'
            '#   GENOTYPE = "runs/search/genotype.json"; EPOCHS = 100; STEPS = 250\n'
            '#   PATCH = None  # the plan\'s patch; DEVICE = "cuda"',
        )
        + """SOURCE_TASK = None  # None: a small synthetic CT task
TARGET_TASK = None  # None: another synthetic task (other organ shapes and intensities)
GENOTYPE = None  # None: an architecture drawn from scnas-small (use 02's genotype.json)
EPOCHS = 2 if QUICK else 6
STEPS = 1 if QUICK else 6
PATCH = (32, 32, 16)
CASES = 4 if QUICK else 6
SHAPE = (32, 32, 20) if QUICK else (48, 48, 32)
DEVICE = "cpu"
""",
        ["parameters"],
    ),
    (
        "code",
        """%matplotlib inline
import json

import torch

import searchspaces
from decathlon import write_synthetic_task
from nasmed.genotype import Genotype
from nasmed.supernet import sample_genotype
from nasmed.train.config import TrainConfig
from nasmed.train.history import read_history
from nasmed.training import train
from nasmed.transfer import TransferConfig, transfer
from nasmed.viz import plot_case, plot_genotype, plot_learning_curves

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
if SOURCE_TASK is None:
    SOURCE_TASK = write_synthetic_task(
        OUT / "source", cases=CASES, shape=SHAPE, classes=1, test_cases=0, seed=0
    )
if TARGET_TASK is None:
    TARGET_TASK = write_synthetic_task(
        OUT / "target", cases=CASES, shape=SHAPE, classes=1, test_cases=0, seed=5,
        name="OtherOrgan",
    )
if GENOTYPE is None:
    genotype = sample_genotype(searchspaces.load("scnas-small"), 3)
    GENOTYPE = OUT / "genotype.json"
    genotype.save(GENOTYPE)
genotype = Genotype.load(GENOTYPE)
config = TrainConfig(  # the nnU-Net recipe (augmentation, deep supervision) with a short run
    epochs=EPOCHS, patch=PATCH, steps_per_epoch=STEPS, batch_size=2, optimizer="adamw", lr=3e-3,
    folds=min(4, CASES), workers=0,
)
runtime = dict(device=DEVICE, progress=False)
target_work = OUT / "target_work"  # the preprocessed target, shared by both target runs""",
    ),
    ("md", "The two tasks (first case of each) and the architecture:"),
    ("code", "plot_case(SOURCE_TASK)"),
    ("code", "plot_case(TARGET_TASK)"),
    ("code", "plot_genotype(genotype)"),
    ("md", "## Train on the source task"),
    (
        "code",
        """source_run = train(SOURCE_TASK, GENOTYPE, OUT / "source_run", config, **runtime)
print(sorted(p.name for p in source_run.iterdir()))""",
    ),
    (
        "md",
        """## Transfer, and the same from scratch

`transfer` rebuilds the network for the target task (its channels and classes), loads every
tensor of the source weights whose name and shape fit, and fine-tunes. Without weights it is
training from scratch with the same settings and seed.""",
    ),
    (
        "code",
        """transferred = transfer(
    GENOTYPE, TARGET_TASK, OUT / "transfer", TransferConfig(weights=source_run, train=config),
    work_dir=target_work, **runtime,
)
scratch = transfer(
    GENOTYPE, TARGET_TASK, OUT / "scratch", TransferConfig(train=config),
    work_dir=target_work, **runtime,
)
report = json.loads((transferred / "transfer.json").read_text())
print({k: (len(v) if isinstance(v, list) else v) for k, v in report.items()})""",
    ),
    (
        "code",
        """plot_learning_curves(
    {"transfer": transferred, "from scratch": scratch, "source task": source_run},
    title="training loss and validation Dice",
)""",
        ["gallery"],
    ),
    (
        "code",
        """for name, run in (("transfer", transferred), ("from scratch", scratch)):
    rows = [r for r in read_history(run / "history.csv") if r.get("val_dice") is not None]
    best = max(r["val_dice"] for r in rows)
    print(f"{name:>13}: final validation Dice {rows[-1]['val_dice']:.3f}, best {best:.3f}")""",
    ),
]

PIPELINE: list[Cell] = [
    (
        "md",
        """# 04 · Split a network with GPipe

torchgpipe runs a network as a sequence of partitions, one per device, feeding them
micro-batches so that the devices work at the same time; with checkpointing, each partition
keeps only its inputs and recomputes its activations in the backward pass. nasmed flattens a
genotype network (or a MONAI U-Net) into such a sequence — the U-Net's skips travel through
`torchgpipe.skip` — profiles every layer's time and memory, and cuts the sequence where the
partitions' costs are most even.""",
    ),
    (
        "code",
        _prelude(
            "04",
            '#   DEVICES = ("cuda:0", "cuda:1"); ARCH = "runs/search/genotype.json"\n'
            "#   PATCH = (128, 128, 128); BATCH = 8; CHUNKS = 4",
        )
        + """ARCH = None  # None: drawn from scnas-small; or "unet", or a genotype.json
DEVICES = ("cpu", "cpu")  # on CPU both partitions share the processor: memory, not speed
PATCH = (32, 32, 32) if QUICK else (64, 64, 64)
BATCH = 4 if QUICK else 8
CHUNKS = 4
""",
        ["parameters"],
    ),
    (
        "code",
        """%matplotlib inline
import importlib.util
import subprocess
import sys

import torch

import searchspaces
from nasmed.models.factory import build_model
from nasmed.pipeline import PipelineConfig, build_pipeline, to_sequential
from nasmed.supernet import sample_genotype
from nasmed.viz import plot_balance, plot_memory_comparison

torch.manual_seed(0)
if ARCH is None:
    ARCH = OUT / "genotype.json"
    sample_genotype(searchspaces.load("scnas-small"), 3).save(ARCH)
model = build_model(ARCH, 1, 2, patch=PATCH)
seq = to_sequential(model)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters in {len(seq)} layers:")
print(", ".join(name for name, _ in seq.named_children()))""",
    ),
    (
        "md",
        """## The balance

`build_pipeline` profiles each layer on one micro-batch (forward + backward time; parameter
bytes, three copies counting gradients and the optimiser state; the activation bytes autograd
keeps) and splits the sequence into contiguous partitions minimising the largest partition's
share of the cost (time and memory shares averaged).""",
    ),
    (
        "code",
        """x = torch.randn(BATCH, 1, *PATCH)
config = PipelineConfig(DEVICES, chunks=CHUNKS, checkpoint="always")
pipe = build_pipeline(model, config, sample=x[: BATCH // CHUNKS], batch_size=BATCH)
print(pipe.describe())
plot_balance(pipe.costs, pipe.balance, devices=[str(d) for d in pipe.devices])""",
        ["gallery"],
    ),
    (
        "md",
        """The pipeline computes the same function as the network (it shares its modules): the
outputs agree up to float32 rounding (micro-batches of another size take other kernels).""",
    ),
    (
        "code",
        """model.eval()
pipe.eval()
with torch.no_grad():
    plain_out = model(x)
    difference = (plain_out - pipe(x)).abs().max().item()
scale = plain_out.abs().max().item()
print(f"largest difference plain vs pipelined: {difference:.2e} (outputs up to {scale:.2f})")""",
    ),
    (
        "md",
        """## Memory: plain vs pipelined

Peak resident memory of one training step (forward and backward of a batch), each in a fresh
process, above that process's memory just before the step (sampled every half millisecond with
`psutil`): the plain network, then the GPipe with checkpointing (`always`) and without
(`never`). Parameters and gradients are the same in all three; the activations differ.""",
    ),
    (
        "code",
        '''STEP = """
import sys, threading, time
import psutil, torch
torch.set_num_threads(1)
from nasmed.models.factory import build_model
from nasmed.pipeline import PipelineConfig, build_pipeline
arch, mode, batch, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
patch = tuple(int(v) for v in sys.argv[5:8])
net = build_model(arch, 1, 2, patch=patch)
x = torch.randn(batch, 1, *patch)
if mode != "plain":
    cfg = PipelineConfig(("cpu", "cpu"), chunks=chunks, checkpoint=mode)
    net = build_pipeline(net, cfg, sample=x[: batch // chunks])
net.train()
proc, peak, done = psutil.Process(), [0], threading.Event()
def watch():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.0005)
before = proc.memory_info().rss
watcher = threading.Thread(target=watch)
watcher.start()
net(x).float().mean().backward()
done.set()
watcher.join()
print((max(peak[0], proc.memory_info().rss) - before) / 2**20)
"""


def step_peak_mb(mode):
    args = [str(ARCH), mode, str(BATCH), str(CHUNKS), *map(str, PATCH)]
    run = subprocess.run(
        [sys.executable, "-c", STEP, *args], capture_output=True, text=True, check=True
    )
    return float(run.stdout.split()[-1])


if importlib.util.find_spec("psutil") is None:
    print("psutil is not installed (pip install psutil): memory not measured")
else:
    peaks = {"plain": step_peak_mb("plain"), "GPipe, checkpoint always": step_peak_mb("always")}
    if not QUICK:
        peaks["GPipe, no checkpoint"] = step_peak_mb("never")
    print({k: round(v, 1) for k, v in peaks.items()})
    display(plot_memory_comparison(peaks, title=f"peak memory, batch {BATCH}, patch {PATCH}"))''',
    ),
]

SLICES: list[Cell] = [
    (
        "md",
        """# 05 · Slice classification: SAOL and AutoCLINT

Which structures does a 2D slice show? A ResNet with a spatially attentive output layer (SAOL)
scores every location and pools the scores with a learned attention map, so the attention
shows where the network looked. AutoCLINT trains it against a fixed time budget and predicts on
the test slices at any time; the score is the area under the learning curve (ALC) of
`2 * AUC - 1` over log-scaled time, so early good predictions count most. Fast AutoAugment
searches an augmentation policy for the slices.""",
    ),
    (
        "code",
        _prelude(
            "05",
            '#   TASK_DIR = "/data/Task03_Liver"; BUDGET = 1200; WIDTH = 64\n'
            '#   AUTOAUGMENT = "full"; INPUT_SIZE = None  # from the slices; DEVICE = "cuda"',
        )
        + """TASK_DIR = None  # None: a small synthetic CT task (organ + lesion)
BUDGET = 20.0 if QUICK else 90.0  # seconds for the whole run, data preparation included
CASES = 5 if QUICK else 8
SHAPE = (32, 32, 24) if QUICK else (40, 40, 32)
HEAD = "saol"
WIDTH = 16
# "full": Fast AutoAugment, a TPE search on a held-out fold with 30% of the budget (give it
# a few minutes); "light": AutoCLINT's, once training saturates with > 120 s left
AUTOAUGMENT = "none"
INPUT_SIZE = 32 if QUICK else 64  # the attention map is 1/8 of it (4x4 at 32, 8x8 at 64)
DEVICE = "cpu"
""",
        ["parameters"],
    ),
    (
        "code",
        """%matplotlib inline
import random

import numpy as np
import torch

from decathlon import load_task, write_synthetic_task
from decathlon.slices import build_slices
from nasmed.classify.api import ClassifyConfig, classify, prepare_slices
from nasmed.classify.autoaugment.policy import Policy, random_subpolicy
from nasmed.classify.backbones import BackboneSpec
from nasmed.classify.saol import build_classifier
from nasmed.train.checkpoint import load_checkpoint
from nasmed.viz import plot_alc, plot_attention, plot_policy_gallery

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
if TASK_DIR is None:
    TASK_DIR = write_synthetic_task(
        OUT / "task", cases=CASES, shape=SHAPE, classes=2, test_cases=0, seed=2
    )
task = load_task(TASK_DIR)
config = ClassifyConfig(
    time_budget=BUDGET, head=HEAD, width=WIDTH, autoaugment=AUTOAUGMENT, input_size=INPUT_SIZE
)""",
    ),
    ("md", "## A run within the budget"),
    (
        "code",
        """run = OUT / "classify"
metrics = classify(TASK_DIR, run, config, device=torch.device(DEVICE), cache_dir=OUT / "slices")
for key in ("classes", "train_slices", "test_slices", "epochs", "steps", "mean_auc", "alc"):
    print(f"{key:>13}: {metrics[key]}")""",
    ),
    (
        "md",
        """## The ALC curve

Each dot is a test prediction (made after an epoch whose validation improved); the curve holds
its score until the next one. Time is `log(1 + t/60) / log(1 + T/60)`.""",
    ),
    (
        "code",
        """anytime = metrics["anytime"]
plot_alc([a["seconds"] for a in anytime], [a["score"] for a in anytime], BUDGET,
         value=metrics["alc"], title=f"{HEAD}, budget {BUDGET:g} s")""",
    ),
    (
        "md",
        """## Where SAOL looks

The trained classifier (`model.pt`) on test slices that show a structure: the attention map
(red: where the pooled score comes from; it fades where the attention is low) over the slice,
the labelled structures outlined in white, titled with each class's probability / target.""",
    ),
    (
        "code",
        """data = prepare_slices(task, config, OUT / "slices")
state = load_checkpoint(run / "model.pt", kind="classify")
spec = BackboneSpec(config.arch, data.test.images.shape[1], config.width)
model = build_classifier(spec, len(state["classes"]), config.head)
model.load_state_dict(state["model"])
model.eval()
shown = np.flatnonzero(data.test.targets.any(axis=1))
shown = shown[np.linspace(0, len(shown) - 1, min(8, len(shown))).astype(int)]
with torch.no_grad():
    out = model(torch.from_numpy(data.test.images[shown]))
probs = torch.sigmoid(out.logits) if data.multilabel else torch.softmax(out.logits, dim=1)
targets = data.test.targets[shown]
titles = [
    "\\n".join(f"{c} {p:.2f}/{t}" for c, p, t in zip(state["classes"], probs[i], targets[i]))
    for i in range(len(shown))
]
# the label outlines: the same slices cut again with their masks
masked = build_slices(
    task, cases=list(data.test.case_names), axis=config.axis, size=data.input_size,
    min_area=config.min_area, masks=True, cache_dir=OUT / "slices",
)
where = {
    (masked.case_names[c], int(k)): i
    for i, (c, k) in enumerate(zip(masked.case_index, masked.slice_index))
}
cases = data.test.slice_cases
masks = np.stack([masked.masks[where[cases[s], int(data.test.slice_index[s])]] for s in shown])
plot_attention(data.test.images[shown], out.attention.numpy(), titles=titles, masks=masks)""",
        ["gallery"],
    ),
    (
        "md",
        """## The augmentation policy

Each row is one sub-policy of the policy the run trained with (two operations, each applied
with its probability at its magnitude), applied four times to the same slice. Without a search
(`AUTOAUGMENT = "none"`, or no time left for one) the policy is empty, and the rows show
sub-policies drawn at random from the pool the searches draw from.""",
    ),
    (
        "code",
        """policy = Policy.load(run / "policy.json")
print(f"{len(policy)} sub-policies found by the search")
if not len(policy):
    policy = Policy(tuple(random_subpolicy(random.Random(seed)) for seed in range(4)))
plot_policy_gallery(policy, data.test.images[shown[0]], samples=4)""",
    ),
]

NOTEBOOKS_SPEC: dict[str, list[Cell]] = {
    "01_decathlon_tour": TOUR,
    "02_search": SEARCH,
    "03_transfer": TRANSFER,
    "04_pipeline": PIPELINE,
    "05_slices": SLICES,
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
