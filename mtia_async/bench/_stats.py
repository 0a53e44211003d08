"""Statistics of samples: median and quartiles, paired ratios, the Mann-Whitney U test.

Everything here is pure arithmetic on lists of floats (no timing), so the tests check it
on synthetic samples and against known values.

Why the U test is written here rather than imported from scipy: the harness needs one
function (~50 lines, exact for the sample sizes it takes, 3-20 repetitions per side), and
scipy would add ~40 MB to the ``test`` extra that CI installs. asv, which compares
benchmark runs the same way, also carries its own. docs/performance.md has the longer
reasoning.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "UNSTABLE_IQR",
    "Stats",
    "mann_whitney_u",
    "min_p_value",
    "paired_differences",
    "paired_ratios",
]

#: A row is *unstable* when its interquartile range exceeds this share of its median
#: (pyperf warns at a standard deviation of 10 % of the mean; for normal data the IQR
#: is 1.35 standard deviations, so 10 % of the median is a slightly stricter rule).
UNSTABLE_IQR = 0.10


@dataclass(frozen=True)
class Stats:
    """Median, quartiles, min and max of a list of samples."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        """Summarise ``samples`` (quartiles by the inclusive method, as numpy's default).

        Raises:
            ValueError: ``samples`` is empty.
        """
        if not samples:
            raise ValueError("no samples to summarise")
        data = [float(x) for x in samples]
        median = statistics.median(data)
        if len(data) >= 2:
            q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
        else:
            q1 = q3 = median
        return cls(median, q1, q3, min(data), max(data), len(data))

    @property
    def iqr(self) -> float:
        """The interquartile range, ``q3 - q1``."""
        return self.q3 - self.q1

    @property
    def rel_iqr(self) -> float | None:
        """The IQR as a share of the median (None when the median is 0 or NaN)."""
        if self.median == 0 or math.isnan(self.median):
            return None
        return self.iqr / abs(self.median)

    @property
    def unstable(self) -> bool:
        """True when the IQR exceeds ``UNSTABLE_IQR`` of the median."""
        rel = self.rel_iqr
        return rel is not None and rel > UNSTABLE_IQR


def paired_ratios(values: Sequence[float], baselines: Sequence[float]) -> list[float]:
    """Per-repetition ratios ``value / baseline`` of two equally long sample lists.

    When the lists differ in length (they should not) the ratio of the medians is
    returned as the only sample.
    """
    if len(values) == len(baselines) and all(b != 0 for b in baselines):
        return [v / b for v, b in zip(values, baselines)]
    base = statistics.median(baselines) if baselines else 0.0
    return [statistics.median(values) / base] if base and values else []


def paired_differences(values: Sequence[float], baselines: Sequence[float]) -> list[float]:
    """Per-repetition differences ``value - baseline`` of two equally long sample lists.

    Raises:
        ValueError: the lists differ in length.
    """
    if len(values) != len(baselines):
        raise ValueError(f"paired samples differ in length: {len(values)} and {len(baselines)}")
    return [v - b for v, b in zip(values, baselines)]


# --- the Mann-Whitney U test -----------------------------------------------------------
def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks (1-based, ties get their average rank) and the sizes of the tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=None)  # at most ~800 (n1, n2) pairs: n1 + n2 <= EXACT_MAX
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1 + n2, n1) orderings give each U = 0 .. n1 * n2 (no ties).

    The recurrence: the largest value belongs to the first sample (it then beats all
    ``n2`` values of the second: U grows by n2) or to the second.
    """
    if n1 == 0 or n2 == 0:
        return (1,)
    with_first = _u_counts(n1 - 1, n2)
    with_second = _u_counts(n1, n2 - 1)
    counts = [0] * (n1 * n2 + 1)
    for u, c in enumerate(with_first):
        counts[u + n2] += c
    for u, c in enumerate(with_second):
        counts[u] += c
    return tuple(counts)


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


#: Exact p-values up to this many samples in total (and no ties); the normal
#: approximation beyond (its error is then well under 0.01 near p = 0.05).
EXACT_MAX = 40


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """The Mann-Whitney U test of two independent samples, two-sided.

    Exact when there are no ties and at most ``EXACT_MAX`` samples in total; otherwise
    the normal approximation with the tie correction and a continuity correction (the
    same choices as ``scipy.stats.mannwhitneyu(method="auto")`` for small samples).

    Returns:
        ``(U, p)``: U of ``x`` (how many pairs (xi, yj) have xi > yj, ties counting
        half) and the two-sided p-value.

    Raises:
        ValueError: a sample is empty.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError(f"the U test needs samples on both sides, got {n1} and {n2}")
    ranks, ties = _ranks([*x, *y])
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    if not ties and n1 + n2 <= EXACT_MAX:
        counts = _u_counts(n1, n2)
        total = math.comb(n1 + n2, n1)
        low = min(u1, n1 * n2 - u1)  # the distribution is symmetric
        tail = sum(counts[: int(low) + 1])
        return u1, min(1.0, 2 * tail / total)
    n = n1 + n2
    mu = n1 * n2 / 2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1))
    var = n1 * n2 / 12 * ((n + 1) - tie_term)
    if var <= 0:  # every value equal: nothing to tell apart
        return u1, 1.0
    z = max(0.0, abs(u1 - mu) - 0.5) / math.sqrt(var)
    return u1, min(1.0, 2 * _normal_sf(z))


def min_p_value(n1: int, n2: int) -> float:
    """The smallest two-sided p-value the exact U test can give with these sample sizes.

    With 3 and 3 samples it is 0.1: no difference can be significant at 0.05.
    """
    if n1 == 0 or n2 == 0:
        return 1.0
    return min(1.0, 2 / math.comb(n1 + n2, n1))
