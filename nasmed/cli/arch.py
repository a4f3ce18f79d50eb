"""Architecture verbs: ``nasmed show-space NAME`` and ``nasmed show GENOTYPE [--png FILE]``.

``show`` prints the cells as text; ``--png FILE`` also draws them (:func:`nasmed.viz.genotype.
plot_genotype`).
"""

from __future__ import annotations

import argparse
from typing import Any

import searchspaces
from decathlon.outputs import check_separate
from nasmed.cli.common import add_common
from nasmed.errors import GenotypeError
from nasmed.genotype import Genotype, check_space, genotype_space

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``show-space`` and ``show`` verbs to the ``nasmed`` subparsers."""
    p = sub.add_parser(
        "show-space",
        help="describe a search space: structure, size, parameter range, cost of a child",
        description="Print a search space's levels, ops and nodes, its size (distinct "
        "networks and genotypes), the parameter range over its architectures and the cost "
        "(params, FLOPs, activation memory) of one child network at a patch.",
    )
    p.add_argument("space", metavar="NAME", help="shipped space name (see below) or a YAML file")
    p.add_argument(
        "--patch",
        type=int,
        nargs="+",
        metavar="N",
        help="patch sides, e.g. 96 96 96 (default: the space's default_patch)",
    )
    p.add_argument("--in-channels", type=int, default=1, help="image channels (default 1)")
    p.add_argument("--out-channels", type=int, default=2, help="classes (default 2)")
    p.add_argument(
        "--measure",
        action="store_true",
        help="measure every op's latency per level on this machine (cached in $NASMED_CACHE; "
        "without it, measured latencies are shown only if already cached)",
    )
    p.epilog = f"shipped spaces: {', '.join(searchspaces.list_spaces())}"
    add_common(p)
    p.set_defaults(func=_show_space)

    p = sub.add_parser(
        "show",
        help="print a genotype's cells (and draw them with --png)",
        description="Print the cells of a genotype.json as text, and whether it still fits "
        "its search space; --png FILE also draws every cell as a graph.",
    )
    p.add_argument("genotype", metavar="GENOTYPE", help="a genotype.json file")
    p.add_argument("--png", metavar="FILE", help="also draw the cells into this PNG file")
    add_common(p)
    p.set_defaults(func=_show)


def _show_space(args: argparse.Namespace) -> int:
    from nasmed.supernet.describe import describe_space  # torch: only for this verb

    space = searchspaces.load(args.space)
    print(
        describe_space(
            space,
            args.patch,
            in_channels=args.in_channels,
            out_channels=args.out_channels,
            latency=True if args.measure else None,
        )
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.png:
        check_separate(args.png, [args.genotype], option="--png")
    genotype = Genotype.load(args.genotype)
    print(genotype.to_text())
    try:
        check_space(genotype, genotype_space(genotype))
        status = (
            "fits the shipped space of that name"
            if genotype.space_def is None
            else "fits its embedded space (a space file's, not shipped)"
        )
    except (GenotypeError, searchspaces.SpaceError) as exc:
        status = f"warning: {exc}"
    print(f"space check: {status}")
    if args.png:
        from nasmed.viz.figure import save_png
        from nasmed.viz.genotype import plot_genotype

        png = save_png(plot_genotype(genotype), args.png, verb="show")
        print(f"wrote {png}")
    return 0
