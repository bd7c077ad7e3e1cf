"""The report's statistics. scipy (and numpy) are imported inside these functions only.

- ``mean_ci``: the mean of a candidate's scores with a 95% interval: Wilson's score interval
  when every score is 0 or 1 (a proportion: it stays within [0, 1], and is not [p, p] at p = 0
  or 1), else Student-t (mean ± t(0.975, n−1)·s/√n) clipped to the scorer's range
  (``SCORE_RANGES``; plugins: unclipped); no interval for fewer than two scores.
- ``paired``: two candidates on the items both scored: the mean difference A − B, its 95%
  t-interval (clipped to ± the scorer's range width), and a two-sided **paired t-test**
  (``scipy.stats.ttest_rel``) on the per-item differences. When every difference is 0 the
  p-value is 1; when every difference is the same other number the test is undefined (no
  variance: t is ±inf), so the p-value is none and ``note`` says "no variance", as it does
  for a NaN from scipy.
- ``quantile``: latency percentiles (linear interpolation, as numpy's default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
TEST = ("paired t-test (two-sided) on per-item differences; 95% intervals: Wilson for 0/1 scores, "
        "else Student-t within the scorer's range")


@dataclass(frozen=True)
class Interval:
    n: int
    mean: float | None
    low: float | None
    high: float | None


# The range of each built-in scorer's scores (gateway.evals.scorers); a plugin's is unknown.
SCORE_RANGES: dict[str, tuple[float, float]] = {
    "exact": (0.0, 1.0), "normalized": (0.0, 1.0), "contains": (0.0, 1.0), "regex": (0.0, 1.0),
    "json": (0.0, 1.0), "numeric": (0.0, 1.0), "judge": (0.0, 1.0), "embedding": (-1.0, 1.0)}
_Z = 1.959963984540054  # the normal distribution's 97.5% quantile


def _t(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - ALPHA / 2, n - 1))


def mean_ci(values: list[float], bounds: tuple[float, float] | None = None, proportion: bool = True) -> Interval:
    """``values``' mean and 95% interval (see the module docstring); ``proportion``: use Wilson's
    interval when every value is 0 or 1 (not for differences)."""
    n = len(values)
    if not n:
        return Interval(0, None, None, None)
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(n, mean, None, None)
    if proportion and all(v in (0.0, 1.0) for v in values):
        z2 = _Z * _Z
        centre = (mean + z2 / (2 * n)) / (1 + z2 / n)
        half = _Z * math.sqrt(mean * (1 - mean) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return Interval(n, mean, max(0.0, centre - half), min(1.0, centre + half))
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = _t(n) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return Interval(n, mean, low, high)


@dataclass(frozen=True)
class Paired:
    diff: Interval
    p_value: float | None
    note: str = ""

    @property
    def significant(self) -> bool | None:
        return None if self.p_value is None else self.p_value < ALPHA


def paired(a: list[float], b: list[float], bounds: tuple[float, float] | None = None) -> Paired:
    """``a`` and ``b``: the two candidates' scores on the same items, in the same order;
    ``bounds``: the scores' range (the differences' is ± its width)."""
    diffs = [x - y for x, y in zip(a, b)]
    width = None if bounds is None else bounds[1] - bounds[0]
    interval = mean_ci(diffs, None if width is None else (-width, width), proportion=False)
    if len(diffs) < 2:
        return Paired(interval, None, "too few pairs")
    # No variance (up to float rounding: 0.9 − 0.4 and 0.7 − 0.2 differ in the last bit): t is
    # 0/0 (all 0) or ±inf, and scipy's p of 0 would call a difference on two items significant.
    if max(diffs) - min(diffs) <= 1e-12:
        return Paired(interval, 1.0) if abs(diffs[0]) <= 1e-12 else Paired(interval, None, "no variance")
    from scipy import stats

    p = float(stats.ttest_rel(a, b).pvalue)
    return Paired(interval, None, "no variance") if math.isnan(p) else Paired(interval, p)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


__all__ = ["ALPHA", "SCORE_RANGES", "TEST", "Interval", "Paired", "mean_ci", "paired", "quantile"]
