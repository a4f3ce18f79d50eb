"""Options and helpers shared by every verb: -v/-q, --seed, --device, --cpu-allocator,
--allow-outside-paths, logging."""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable

from decathlon.datalist import outside_paths_allowed
from decathlon.errors import DecathlonError
from nasmed.allocator import CpuAllocator
from nasmed.engine.defaults import AMP_DTYPES
from nasmed.errors import NasmedError
from searchspaces.errors import SpaceError

__all__ = [
    "USER_ERRORS",
    "add_common",
    "add_cpu_allocator",
    "add_device",
    "add_patch",
    "add_seed",
    "add_task_verb",
    "setup_logging",
]

USER_ERRORS: tuple[type[Exception], ...] = (DecathlonError, NasmedError, SpaceError)


def add_common(parser: argparse.ArgumentParser) -> None:
    """Add ``-v/--verbose`` (repeatable) and ``-q/--quiet``."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def add_seed(parser: argparse.ArgumentParser, default: int = 0) -> None:
    """Add ``--seed`` for verbs that draw random numbers."""
    parser.add_argument(
        "--seed", type=int, default=default, help=f"random seed (default {default})"
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` for verbs that run torch."""
    parser.add_argument(
        "--device", default="auto", help="torch device: auto (cuda if present), cpu, cuda, cuda:1"
    )


def add_cpu_allocator(parser: argparse.ArgumentParser, default: str) -> None:
    """Add ``--cpu-allocator cache|lean|system`` (:mod:`nasmed.allocator`).

    :func:`nasmed.cli.main.main` applies it before the verb runs, so before torch is imported.
    """
    parser.add_argument(
        "--cpu-allocator",
        choices=[a.value for a in CpuAllocator],
        default=default,
        help="how CPU tensors are allocated: cache keeps freed memory for reuse (fastest), lean "
        "hands large blocks back to the system (lowest peak), system leaves glibc alone; "
        f"MALLOC_* variables of your own win (default {default})",
    )


def add_amp(parser: argparse.ArgumentParser, amp_default: str) -> None:
    """``--amp`` / ``--no-amp`` and ``--amp-dtype`` (``--amp`` left unset keeps the config's
    default, ``amp_default`` in the help)."""
    amp = parser.add_mutually_exclusive_group()
    amp.add_argument(
        "--amp",
        dest="amp",
        action="store_const",
        const=True,
        default=None,
        help=f"mixed precision (default: {amp_default})",
    )
    amp.add_argument("--no-amp", dest="amp", action="store_const", const=False)
    parser.add_argument(
        "--amp-dtype",
        choices=AMP_DTYPES,
        default="auto",
        help="autocast dtype: auto (float16 with a grad scaler on CUDA, bfloat16 on CPU), "
        "bf16 or fp16 (CUDA only) (default auto)",
    )


def add_precision(parser: argparse.ArgumentParser, amp_default: str) -> None:
    """:func:`add_amp` and ``--activation-checkpointing``: the engine's precision and memory
    switches (``TrainConfig`` / ``SearchConfig`` fields of the same names)."""
    add_amp(parser, amp_default)
    parser.add_argument(
        "--activation-checkpointing",
        action="store_true",
        help="recompute blocks in the backward pass: less memory, more time",
    )


def precision_options(args: argparse.Namespace) -> dict[str, object]:
    """The config fields :func:`add_precision`'s options set (``amp`` only when given)."""
    out: dict[str, object] = {
        "amp_dtype": args.amp_dtype,
        "activation_checkpointing": args.activation_checkpointing,
    }
    if args.amp is not None:
        out["amp"] = args.amp
    return out


def add_patch(parser: argparse.ArgumentParser, help: str) -> None:
    """Add ``--patch X Y Z`` (three integers, default None) with the verb's own ``help``."""
    parser.add_argument(
        "--patch", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"), help=help
    )


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Configure the root logger for the command line."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    # matplotlib warns over several lines when HOME is read-only and then works from a temporary
    # folder; nasmed reports the problems that matter itself, in one line.
    logging.getLogger("matplotlib").setLevel(logging.ERROR)


def add_task_verb(
    parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]
) -> None:
    """Add ``--allow-outside-paths`` and make ``func`` the verb, run with that choice in force
    for every task it reads (:func:`decathlon.datalist.outside_paths_allowed`)."""
    parser.add_argument(
        "--allow-outside-paths",
        action="store_true",
        help="read dataset.json entries that point outside the task folder (absolute or ../ "
        "paths, symlinks out of it); refused by default",
    )

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        with outside_paths_allowed(bool(args.allow_outside_paths)):
            return func(args)

    parser.set_defaults(func=run)
