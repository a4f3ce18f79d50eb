"""The statistics of ``nasmed compare``: pure functions of plain numbers and genotypes.

- :func:`percentile` and :func:`permutation_p`: where a found architecture's mean Dice lies among
  the random architectures' means, and how surprising that is under the null hypothesis that the
  found architecture is one more uniform draw from the space (its mean Dice exchangeable with the
  random ones): ``p = (1 + #{random >= found}) / (1 + K)``, the exact permutation p-value of the
  rank of one value among ``K + 1`` exchangeable values (ties count against the found one).
- :func:`expected_best_of_n`: the expected best mean Dice of ``N`` architectures drawn without
  replacement from the ``K`` trained random ones (best-of-N random search at equal compute).
- :func:`kendall_tau` (``scipy.stats.kendalltau``) and :func:`cross_seed_rank_correlation`
  (``scipy.stats.spearmanr`` between the seeds' Dice over the same architectures).
- :func:`agreement` and :func:`chance_agreement`: how often two genotypes make the same choice
  on a candidate edge (absent, or kept with op X) and what two uniformly random genotypes of the
  space would give. Written here because no library knows genotypes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

from nasmed.genotype import Genotype
from searchspaces import SearchSpace

__all__ = [
    "Agreement",
    "agreement",
    "chance_agreement",
    "cross_seed_rank_correlation",
    "edge_choices",
    "expected_best_of_n",
    "kendall_tau",
    "mean_pairwise_agreement",
    "percentile",
    "permutation_p",
]


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def percentile(found: float, randoms: Sequence[float]) -> float:
    """Percentile (0-100) of ``found`` among ``randoms``: the share below it, ties counting half.

    Raises:
        ValueError: no finite random value.
    """
    values = _finite(randoms)
    if not values:
        raise ValueError("no random architecture with a finite Dice")
    below = sum(v < found for v in values)
    ties = sum(v == found for v in values)
    return 100.0 * (below + 0.5 * ties) / len(values)


def permutation_p(found: float, randoms: Sequence[float]) -> float:
    """One-sided permutation p-value of ``found`` being better than random draws of the space.

    ``(1 + #{random >= found}) / (1 + K)``: under the null (the found architecture's mean Dice
    is exchangeable with the ``K`` random architectures' means) its rank is uniform over
    ``K + 1`` places, so this is the probability of a rank at least this high. Its smallest
    possible value is ``1 / (K + 1)``.

    Raises:
        ValueError: no finite random value.
    """
    values = _finite(randoms)
    if not values:
        raise ValueError("no random architecture with a finite Dice")
    return (1 + sum(v >= found for v in values)) / (1 + len(values))


def expected_best_of_n(randoms: Sequence[float], n: int) -> float:
    """Expected maximum of ``n`` values drawn without replacement from ``randoms``.

    With the values sorted ascending ``v_1..v_K``, ``v_i`` is the maximum of a draw with
    probability ``C(i - 1, n - 1) / C(K, n)``. ``n`` is clipped to ``1..K``.

    Raises:
        ValueError: no finite value.
    """
    values = sorted(_finite(randoms))
    if not values:
        raise ValueError("no random architecture with a finite Dice")
    k = len(values)
    n = max(1, min(int(n), k))
    total = math.comb(k, n)
    return sum(v * math.comb(i, n - 1) for i, v in enumerate(values)) / total


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Kendall's tau-b between paired values and its two-sided p (``scipy.stats.kendalltau``).

    Pairs with a non-finite member are dropped; fewer than 3 pairs, or a constant side, give
    ``(nan, nan)``.
    """
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return math.nan, math.nan
    res = scipy_stats.kendalltau([a for a, _ in pairs], [b for _, b in pairs])
    return float(res.statistic), float(res.pvalue)


def cross_seed_rank_correlation(per_seed: Sequence[Sequence[float]]) -> float:
    """Mean Spearman correlation over pairs of seeds of the architectures' Dice.

    Args:
        per_seed: ``per_seed[s][a]`` is architecture ``a``'s Dice under seed ``s``.

    Returns:
        The mean over seed pairs (``nan`` with one seed, fewer than 3 architectures, or a seed
        whose Dice are all equal).
    """
    rhos = []
    for a, b in itertools.combinations(per_seed, 2):
        pairs = [(u, v) for u, v in zip(a, b, strict=True) if math.isfinite(u) and math.isfinite(v)]
        if len(pairs) < 3 or len({u for u, _ in pairs}) < 2 or len({v for _, v in pairs}) < 2:
            continue
        rhos.append(float(scipy_stats.spearmanr([u for u, _ in pairs], [v for _, v in pairs])[0]))
    return sum(rhos) / len(rhos) if rhos else math.nan


def edge_choices(genotype: Genotype, space: SearchSpace) -> dict[tuple[str, int, int], str | None]:
    """Every candidate edge ``(key, source, node)`` of the space -> its op (``None``: absent)."""
    out: dict[tuple[str, int, int], str | None] = {}
    for key in space.arch_keys():
        kept = genotype.cell(key).edges()
        for source, node in space.edges():
            out[(key, source, node)] = kept.get((source, node))
    return out


@dataclass(frozen=True)
class Agreement:
    """How often two genotypes choose alike, over the candidate edges of a space.

    Attributes:
        edges: share of candidate edges with the same choice (absent, or kept with the same op).
        inputs: share of candidate edges both keep or both drop.
        ops: share of the edges both keep that carry the same op (``nan`` if none).
    """

    edges: float
    inputs: float
    ops: float


def agreement(a: Genotype, b: Genotype, space: SearchSpace) -> Agreement:
    """The :class:`Agreement` of genotypes ``a`` and ``b`` of ``space``."""
    ca, cb = edge_choices(a, space), edge_choices(b, space)
    keys = list(ca)
    same = sum(ca[k] == cb[k] for k in keys)
    same_inputs = sum((ca[k] is None) == (cb[k] is None) for k in keys)
    both = [k for k in keys if ca[k] is not None and cb[k] is not None]
    same_ops = sum(ca[k] == cb[k] for k in both)
    return Agreement(
        same / len(keys), same_inputs / len(keys), same_ops / len(both) if both else math.nan
    )


def mean_pairwise_agreement(genotypes: Sequence[Genotype], space: SearchSpace) -> Agreement:
    """The mean :class:`Agreement` over every pair of ``genotypes`` (at least two)."""
    if len(genotypes) < 2:
        raise ValueError("agreement needs at least two genotypes")
    pairs = [agreement(a, b, space) for a, b in itertools.combinations(genotypes, 2)]
    ops = _finite([p.ops for p in pairs])
    return Agreement(
        sum(p.edges for p in pairs) / len(pairs),
        sum(p.inputs for p in pairs) / len(pairs),
        sum(ops) / len(ops) if ops else math.nan,
    )


def chance_agreement(space: SearchSpace) -> Agreement:
    """The expected :class:`Agreement` of two independent uniform genotypes of ``space``.

    Node ``i`` keeps a uniform ``kept(i)``-subset of its ``i`` sources, so a candidate edge is
    kept with probability ``p = kept(i) / i`` and then carries each of the ``m`` ops with
    probability ``1 / m`` (:func:`nasmed.supernet.sample_genotype`). Per edge: same choice
    ``(1 - p)^2 + p^2 / m``, same keep/drop ``(1 - p)^2 + p^2``; same op given both kept ``1 / m``.
    """
    m = len(space.ops)
    probs = [space.kept(node) / node for _, node in space.edges()]
    return Agreement(
        sum((1 - p) ** 2 + p * p / m for p in probs) / len(probs),
        sum((1 - p) ** 2 + p * p for p in probs) / len(probs),
        1.0 / m,
    )
