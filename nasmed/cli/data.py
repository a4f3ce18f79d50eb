"""Data verbs: ``nasmed synth`` (write a synthetic MSD task) and ``nasmed inspect`` (validate one).

``inspect`` exits 0 and prints a summary table when the task is valid, or exits 2 and lists every
problem on stderr, one line each. Warnings go to stderr in both cases.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from decathlon.outputs import check_separate
from decathlon.synthetic import write_synthetic_task
from decathlon.validate import validate_task
from nasmed.cli.common import add_common, add_seed, add_task_verb

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``synth`` and ``inspect`` verbs to the ``nasmed`` subparsers."""
    p = sub.add_parser(
        "synth",
        help="write a synthetic MSD-format task",
        description="Write a synthetic MSD-format task (NIfTI, real geometry) into OUT_DIR.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="task folder to create (new or empty)")
    p.add_argument("--cases", type=int, default=8, help="training cases (default 8)")
    p.add_argument("--test-cases", type=int, default=2, help="test cases (default 2)")
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(48, 48, 32),
        metavar=("X", "Y", "Z"),
        help="image size in voxels (default 48 48 32)",
    )
    p.add_argument("--classes", type=int, default=2, help="foreground classes (default 2)")
    p.add_argument("--modalities", type=int, default=1, help="channels, 1-4 (default 1, CT-like)")
    p.add_argument(
        "--mri",
        action="store_true",
        help="with one modality, write an MR-like channel instead of a CT-like one",
    )
    p.add_argument("--name", default=None, help="task name in dataset.json")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty OUT_DIR that synth wrote (any other folder is refused)",
    )
    add_seed(p)
    add_common(p)
    p.set_defaults(func=_synth)

    p = sub.add_parser(
        "inspect",
        help="validate a task folder and summarise it",
        description="Check every file of an MSD (or nnU-Net raw) task folder and summarise it. "
        "Exit 0 with a summary, or 2 with every problem found, one per line.",
    )
    p.add_argument("task_dir", metavar="TASK_DIR", help="folder holding dataset.json")
    p.add_argument("--workers", type=int, default=1, help="cases read at a time (default 1)")
    p.add_argument(
        "--png",
        metavar="FILE",
        help="when valid, also draw one case (orthogonal slices, label overlaid) into FILE",
    )
    p.add_argument(
        "--case", metavar="NAME", help="the case --png draws (default: the first training case)"
    )
    add_common(p)
    add_task_verb(p, _inspect)


def _synth(args: argparse.Namespace) -> int:
    out = write_synthetic_task(
        args.out_dir,
        cases=args.cases,
        shape=tuple(args.shape),
        classes=args.classes,
        modalities=args.modalities,
        seed=args.seed,
        test_cases=args.test_cases,
        name=args.name,
        ct=False if args.mri else None,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {out}: {args.cases} training + {args.test_cases} test cases, "
        f"{args.classes} classes, {args.modalities} modalities, seed {args.seed}"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    if args.png:
        check_separate(args.png, [args.task_dir], option="--png")
    report = validate_task(args.task_dir, workers=max(1, args.workers))
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not report.ok:
        n = len(report.problems)
        print(
            f"nasmed inspect: error: {args.task_dir}: {n} problem{'s' if n != 1 else ''} found",
            file=sys.stderr,
        )
        for line in report.problems:
            print(line, file=sys.stderr)
        return 2
    summary = report.summary
    if summary is not None:
        print(summary.table())
    print(f"ok: {args.task_dir} is valid ({len(report.warnings)} warnings)")
    if args.png:
        from nasmed.viz.figure import save_png
        from nasmed.viz.volume import plot_case

        png = save_png(plot_case(args.task_dir, args.case), args.png, verb="inspect")
        print(f"wrote {png}")
    return 0
