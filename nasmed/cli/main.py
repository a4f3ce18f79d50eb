"""Entry point of the ``nasmed`` console script.

Each verb group lives in its own module of :mod:`nasmed.cli` and exposes
``register(subparsers)``, which adds its verbs; a verb's parser carries ``func(args) -> int``.
User errors (:class:`decathlon.errors.DecathlonError`, :class:`nasmed.errors.NasmedError`,
:class:`searchspaces.SpaceError`) print one line to stderr and exit with status 2; so do the file
system's refusals (read-only folder, disk full, symlink loop, ...: :mod:`nasmed.cli.oserrors`)
and running out of memory. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from nasmed import __version__
from nasmed.allocator import configure_cpu_allocator
from nasmed.cli.common import USER_ERRORS, setup_logging
from nasmed.cli.oserrors import describe_os_error, is_user_os_error

__all__ = ["build_parser", "main"]

# Verb groups, in the order `nasmed --help` lists them.
VERB_MODULES: tuple[str, ...] = (
    "nasmed.cli.data",
    "nasmed.cli.preprocess",
    "nasmed.cli.classify",
    "nasmed.cli.arch",
    "nasmed.cli.search",
    "nasmed.cli.train",
    "nasmed.cli.compare",
    "nasmed.cli.export",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full ``nasmed`` parser with every verb registered."""
    parser = argparse.ArgumentParser(
        prog="nasmed",
        description="Neural architecture search for 3D medical image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"nasmed {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name in VERB_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    other_rank = os.environ.get("RANK", "0") != "0"  # under torchrun, rank 0 alone reports
    if other_rank:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (open for the process)
    setup_logging(getattr(args, "verbose", 0), getattr(args, "quiet", False) or other_rank)
    try:
        if getattr(args, "cpu_allocator", None):  # before the verb imports torch
            configure_cpu_allocator(args.cpu_allocator)
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        return _fail(args.verb, str(exc))
    except MemoryError:
        return _fail(args.verb, "out of memory; use a smaller --patch, --batch or --shape")
    except (OSError, RuntimeError) as exc:
        if not is_user_os_error(exc):
            raise
        return _fail(args.verb, describe_os_error(exc))
    except KeyboardInterrupt:
        logging.getLogger("nasmed").warning("interrupted")
        return 130


def _fail(verb: str, message: str) -> int:
    """Print the one error line (newlines inside the message folded) and return status 2."""
    print(f"nasmed {verb}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
