"""The report's statistics. scipy (and numpy) are imported inside these functions only.

- ``mean_ci``: the mean of a candidate's scores with a 95% Student-t interval
  (mean ± t(0.975, n−1)·s/√n); no interval for fewer than two scores.
- ``paired``: two candidates on the items both scored: the mean difference A − B, its 95%
  t-interval, and a two-sided **paired t-test** (``scipy.stats.ttest_rel``) on the per-item
  differences; when every difference is 0 the p-value is 1.
- ``quantile``: latency percentiles (linear interpolation, as numpy's default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
TEST = "paired t-test (two-sided) on per-item differences; 95% Student-t intervals"


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float | None
    low: float | None
    high: float | None


def _t(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - ALPHA / 2, n - 1))


def mean_ci(values: list[float]) -> Interval:
    n = len(values)
    if not n:
        return Interval(0, None, None, None)
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(n, mean, None, None)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t(n) * sd / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half)


@dataclass(frozen=True)
class Paired:
    diff: Interval
    p_value: float | None

    @property
    def significant(self) -> bool | None:
        return None if self.p_value is None else self.p_value < ALPHA


def paired(a: list[float], b: list[float]) -> Paired:
    """``a`` and ``b``: the two candidates' scores on the same items, in the same order."""
    diffs = [x - y for x, y in zip(a, b)]
    interval = mean_ci(diffs)
    if len(diffs) < 2:
        return Paired(interval, None)
    if all(d == diffs[0] for d in diffs):  # no variance: t is 0/0 (all equal) or ±inf
        return Paired(interval, 1.0 if diffs[0] == 0 else 0.0)
    from scipy import stats

    p = float(stats.ttest_rel(a, b).pvalue)
    return Paired(interval, None if math.isnan(p) else p)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


__all__ = ["ALPHA", "TEST", "Interval", "Paired", "mean_ci", "paired", "quantile"]
