"""Statistics of repeated runs: mean ± standard deviation, and paired differences with Student-t intervals.

A benchmark trains every configuration with several seeds; a claim such as "the student beats the LR baseline"
is a paired difference over the seeds (run ``i`` of both rows shares ``run.seed = i``, hence initialisation and
data order). The interval is the two-sided Student-t confidence interval of the mean difference; a claim is
decided only when the interval excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Summary", "Difference", "summarize", "paired_difference", "t_quantile", "runs_needed"]


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (``n - 1`` in the denominator; ``nan`` for one value) and count."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f} (n={self.n})" if self.n > 1 else f"{self.mean:.2f} (n=1)"


@dataclass(frozen=True)
class Difference:
    """The mean of paired differences ``a_i - b_i`` with its two-sided confidence interval.

    Attributes:
        mean, std, n: of the differences.
        low, high: the interval (``nan`` with fewer than two pairs).
        confidence: e.g. 0.95.
    """

    mean: float
    std: float
    n: int
    low: float
    high: float
    confidence: float

    @property
    def verdict(self) -> str:
        """``"> 0"`` or ``"< 0"`` when the interval excludes 0, else ``"undecided"``."""
        if self.low > 0:
            return "> 0"
        if self.high < 0:
            return "< 0"
        return "undecided"

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:+.2f} (n={self.n}, no interval)"
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] (n={self.n})"


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation of ``values`` (at least one)."""
    if not values:
        raise ValueError("summarize needs at least one value")
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return Summary(mean, std, n)


def _t_density(x: float, df: int) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def _t_central_mass(t: float, df: int, steps: int = 400) -> float:
    """P(-t < T < t) for Student's T with ``df`` degrees of freedom (Simpson's rule on [0, t])."""
    h = t / steps
    total = _t_density(0.0, df) + _t_density(t, df)
    total += sum((4 if i % 2 else 2) * _t_density(i * h, df) for i in range(1, steps))
    return 2 * total * h / 3


@lru_cache(maxsize=256)
def t_quantile(df: int, confidence: float = 0.95) -> float:
    """The two-sided Student-t critical value: ``t`` with ``P(|T| < t) = confidence`` (4.303 for df 2, 95 %)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    low, high = 0.0, 1.0
    while _t_central_mass(high, df) < confidence:
        low, high = high, 2 * high
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_central_mass(mid, df) < confidence else (low, mid)
    return (low + high) / 2


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """Mean of ``a_i - b_i`` with its Student-t interval (``a`` and ``b`` paired by position, e.g. by seed)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values need the same, non-zero length, got {len(a)} and {len(b)}")
    diff = summarize([x - y for x, y in zip(a, b, strict=True)])
    if diff.n < 2:
        return Difference(diff.mean, diff.std, diff.n, math.nan, math.nan, confidence)
    half = t_quantile(diff.n - 1, confidence) * diff.std / math.sqrt(diff.n)
    return Difference(diff.mean, diff.std, diff.n, diff.mean - half, diff.mean + half, confidence)


def runs_needed(diff: Difference, limit: int = 100) -> int | None:
    """Pairs needed for the interval to exclude 0 if the mean and spread stayed as measured (``None``: > ``limit``).

    A planning estimate, not a guarantee: with few pairs the measured spread is itself uncertain.
    """
    if diff.n < 2 or diff.mean == 0 or math.isnan(diff.std):
        return None
    if diff.std == 0:
        return 2
    for n in range(2, limit + 1):
        if t_quantile(n - 1, diff.confidence) * diff.std / math.sqrt(n) < abs(diff.mean):
            return n
    return None
