"""The networks a comparison trains: found genotypes, random genotypes of their space, baselines.

:func:`load_found` reads every ``--arch`` (a ``genotype.json`` or a search run folder holding
one) and checks that all belong to one search space as it is now; :func:`random_candidates`
draws ``K`` genotypes uniformly from that space with seeds ``1000 * seed + i``
(:func:`nasmed.supernet.sample_genotype`), so the same settings always give the same
architectures. Baselines join once their widths are matched (:mod:`nasmed.compare.costs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import searchspaces
from nasmed.errors import ConfigError, GenotypeError
from nasmed.genotype import Genotype, check_space, genotype_space
from nasmed.supernet import sample_genotype
from searchspaces import SearchSpace

__all__ = [
    "Candidate",
    "Kind",
    "check_common_patch",
    "load_found",
    "random_candidates",
    "random_seed",
]

Kind = Literal["found", "random", "baseline"]


@dataclass(frozen=True)
class Candidate:
    """One network of the comparison.

    Attributes:
        name: unique name; its runs go to ``OUT/runs/<name>/seed<k>``.
        kind: ``found``, ``random`` or ``baseline``.
        arch: the genotype, or the baseline's name.
        source: where it came from (a file, ``random seed N``, a baseline name).
        width: channel multiplier.
        matched: for a baseline, the criteria its width matches (``params``, ``flops``,
            ``step_time``).
    """

    name: str
    kind: Kind
    arch: Genotype | str
    source: str
    width: float = 1.0
    matched: tuple[str, ...] = field(default=())


def random_seed(seed: int, index: int) -> int:
    """The seed of random genotype ``index`` of a comparison seeded ``seed``."""
    return 1000 * seed + index


def _found_name(path: Path, taken: set[str]) -> str:
    stem = path.parent.name if path.name == "genotype.json" else path.stem
    base = f"found_{stem or 'arch'}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def load_found(archs: Sequence[Path], default_space: str) -> tuple[SearchSpace, list[Candidate]]:
    """The found genotypes and their (common) search space.

    Args:
        archs: ``genotype.json`` files or folders holding one.
        default_space: the space when ``archs`` is empty.

    Raises:
        GenotypeError: an unreadable genotype, one of another space than the first, or one
            whose space changed since it was made. SpaceError: an unknown space.
    """
    found: list[Candidate] = []
    space: SearchSpace | None = None
    taken: set[str] = set()
    for arch in archs:
        path = arch / "genotype.json" if arch.is_dir() else arch
        if not path.is_file():
            raise GenotypeError(f"{path}: --arch is not an existing genotype.json")
        genotype = Genotype.load(path)
        if space is None:
            space = genotype_space(genotype)
        elif genotype.space != space.name or genotype.space_hash != space.content_hash():
            raise GenotypeError(
                f"{path}: genotype of search space {genotype.space!r} (hash "
                f"{genotype.space_hash[:12]}), but the first --arch is of {space.name!r} (hash "
                f"{space.content_hash()[:12]}); compare architectures of one space"
            )
        try:
            check_space(genotype, space)
        except GenotypeError as exc:
            raise GenotypeError(f"{path}: {exc}") from None
        name = _found_name(path, taken)
        taken.add(name)
        found.append(Candidate(name, "found", genotype, str(path)))
    return (space if space is not None else searchspaces.load(default_space)), found


def random_candidates(space: SearchSpace, count: int, seed: int) -> list[Candidate]:
    """``count`` genotypes drawn uniformly from ``space`` (``random_00``, ``random_01``, ...)."""
    digits = max(2, len(str(max(count - 1, 0))))
    out = []
    for i in range(count):
        s = random_seed(seed, i)
        out.append(
            Candidate(
                f"random_{i:0{digits}d}", "random", sample_genotype(space, s), f"random seed {s}"
            )
        )
    return out


def check_common_patch(
    patch: Sequence[int], space: SearchSpace | None, baselines: Sequence[str]
) -> tuple[int, int, int]:
    """``patch`` if every network of the comparison accepts it, else a :class:`ConfigError`."""
    divisor = math.lcm(space.divisor if space is not None else 1, 16 if baselines else 1)
    sides = tuple(int(p) for p in patch)
    if len(sides) != 3 or min(sides) < divisor or any(s % divisor for s in sides):
        nearest = [max(divisor, (s // divisor) * divisor) for s in sides]
        raise ConfigError(
            f"--patch {list(sides)} does not fit every network: each side must be a positive "
            f"multiple of {divisor}; nearest valid patch: {nearest}"
        )
    return (sides[0], sides[1], sides[2])
