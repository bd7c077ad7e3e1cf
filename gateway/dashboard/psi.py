"""Drift statistics, pure functions of numbers (no I/O): the population stability index over
quantile bins and over categories, and the two tests for rates and means.

**PSI** compares a current distribution with a reference one over the same bins::

    PSI = Σ_i (c_i − r_i) · ln(c_i / r_i)

with ``r_i``/``c_i`` the share of reference/current values in bin ``i`` (a share of 0 counts
as ``EPSILON`` so an empty bin contributes a large but finite term). The bins are cut at the
reference window's quantiles (deciles by default), so each holds about the same share of the
reference; equal cut points (many identical values) merge into one. Bin ``i`` holds
``edges[i-1] < x <= edges[i]``: the first is ``x <= edges[0]``, the last ``x > edges[-1]``.
The usual reading: below 0.1 stable, 0.1–0.25 a moderate shift (``warn``), 0.25 and above a
significant shift (``drift``). For two normal distributions with equal variance whose means
differ by ``d`` standard deviations, PSI approaches ``d²`` as the bins get finer.

**Rates** (error rate): a two-proportion z-test with the pooled rate. **Means** (feedback
score): Welch's z (difference of means over its standard error) and Cohen's d (difference
over the pooled standard deviation).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

EPSILON = 1e-4
PSI_WARN = 0.1
PSI_DRIFT = 0.25
OK, WARN, DRIFT, NA = "ok", "warn", "drift", "n/a"
LEVEL_ORDER = {NA: 0, OK: 1, WARN: 2, DRIFT: 3}


def quantile_levels(bins: int) -> list[float]:
    """The interior quantile levels that cut ``bins`` equal-share bins (``10`` → 0.1 … 0.9)."""
    if bins < 2:
        raise ValueError("bins must be at least 2")
    return [round(i / bins, 6) for i in range(1, bins)]


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (position ``q·(n−1)``, as ClickHouse's
    ``quantileExactInclusive`` and numpy's default)."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def edges_from_quantiles(values: Iterable[float | None]) -> list[float]:
    """Cut points from the reference quantiles: sorted, without duplicates or missing values."""
    out: list[float] = []
    for v in sorted(float(v) for v in values if v is not None and not math.isnan(float(v))):
        if not out or v > out[-1]:
            out.append(v)
    return out


def reference_edges(reference: Sequence[float], bins: int = 10) -> list[float]:
    """Cut points at the reference values' quantiles (what the SQL computes in ClickHouse)."""
    ordered = sorted(reference)
    return edges_from_quantiles(quantile(ordered, q) for q in quantile_levels(bins))


def bin_index(x: float, edges: Sequence[float]) -> int:
    """The bin of ``x``: how many cut points lie strictly below it (``0 … len(edges)``)."""
    return sum(1 for e in edges if e < x)


def histogram(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """Counts per bin (``len(edges) + 1`` bins)."""
    counts = [0] * (len(edges) + 1)
    for x in values:
        counts[bin_index(x, edges)] += 1
    return counts


def shares(counts: Sequence[float]) -> list[float]:
    """Counts as shares of their total (all zeros when the total is 0)."""
    total = float(sum(counts))
    return [c / total if total else 0.0 for c in counts]


def psi_terms(reference: Sequence[float], current: Sequence[float], epsilon: float = EPSILON) -> list[float]:
    """Each bin's PSI term from two count (or share) vectors of the same length."""
    if len(reference) != len(current):
        raise ValueError("reference and current need the same bins")
    r, c = shares(reference), shares(current)
    out = []
    for ri, ci in zip(r, c):
        ri, ci = max(ri, epsilon), max(ci, epsilon)
        out.append((ci - ri) * math.log(ci / ri))
    return out


def psi(reference: Sequence[float], current: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of ``current`` against ``reference`` (counts per bin)."""
    return sum(psi_terms(reference, current, epsilon))


def categorical_psi(reference: Mapping[str, float], current: Mapping[str, float],
                    epsilon: float = EPSILON) -> float:
    """PSI over categories (e.g. finish reasons); a category missing on one side counts 0."""
    keys = sorted(set(reference) | set(current))
    return psi([reference.get(k, 0) for k in keys], [current.get(k, 0) for k in keys], epsilon)


def psi_level(value: float | None, warn: float = PSI_WARN, drift: float = PSI_DRIFT) -> str:
    """``ok`` below ``warn`` (0.1), ``warn`` below ``drift`` (0.25), else ``drift``; ``n/a`` for None."""
    if value is None:
        return NA
    if value >= drift:
        return DRIFT
    if value >= warn:
        return WARN
    return OK


def two_proportion_z(x_ref: int, n_ref: int, x_cur: int, n_cur: int) -> float:
    """z of ``x_cur/n_cur − x_ref/n_ref`` under the pooled rate (0 when both rates are 0 or 1)."""
    if n_ref <= 0 or n_cur <= 0:
        raise ValueError("both windows need observations")
    pooled = (x_ref + x_cur) / (n_ref + n_cur)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
    diff = x_cur / n_cur - x_ref / n_ref
    if se == 0:
        return 0.0
    return diff / se


def welch_z(mean_ref: float, var_ref: float, n_ref: int, mean_cur: float, var_cur: float, n_cur: int) -> float:
    """Difference of means over its standard error (sample variances); ±inf when both windows
    are constant and differ, 0 when they are equal."""
    diff = mean_cur - mean_ref
    se = math.sqrt(max(var_ref, 0.0) / n_ref + max(var_cur, 0.0) / n_cur)
    if se == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / se


def cohens_d(mean_ref: float, var_ref: float, n_ref: int, mean_cur: float, var_cur: float, n_cur: int) -> float:
    """Difference of means over the pooled standard deviation."""
    diff = mean_cur - mean_ref
    dof = n_ref + n_cur - 2
    pooled = ((n_ref - 1) * max(var_ref, 0.0) + (n_cur - 1) * max(var_cur, 0.0)) / dof if dof > 0 else 0.0
    if pooled <= 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / math.sqrt(pooled)


def rise_level(z: float, change: float, min_change: float, warn_z: float = 2.0, drift_z: float = 3.0) -> str:
    """Level of a rise (error rate up): ``drift`` when ``z >= drift_z`` and ``change >=
    min_change``, ``warn`` at ``z >= warn_z``; a fall or a small change is ``ok``."""
    if change < min_change:
        return OK
    if z >= drift_z:
        return DRIFT
    if z >= warn_z:
        return WARN
    return OK


def drop_level(z: float, d: float, min_effect: float = 0.2, warn_z: float = 2.0, drift_z: float = 3.0) -> str:
    """Level of a fall (feedback score down): ``drift`` when ``z <= −drift_z`` and the effect
    size ``d <= −min_effect``, ``warn`` at ``z <= −warn_z``; a rise is ``ok``."""
    if d > -min_effect:
        return OK
    if z <= -drift_z:
        return DRIFT
    if z <= -warn_z:
        return WARN
    return OK


def worst(levels: Iterable[str]) -> str:
    """The most severe level (``n/a`` < ``ok`` < ``warn`` < ``drift``)."""
    out = NA
    for level in levels:
        if LEVEL_ORDER[level] > LEVEL_ORDER[out]:
            out = level
    return out


def bin_labels(edges: Sequence[float], fmt=lambda v: f"{v:g}") -> list[str]:
    """Readable bin names: ``≤ e0``, ``e0–e1``, …, ``> eN``."""
    if not edges:
        return ["all"]
    labels = [f"≤ {fmt(edges[0])}"]
    labels += [f"{fmt(a)}–{fmt(b)}" for a, b in zip(edges, edges[1:])]
    labels.append(f"> {fmt(edges[-1])}")
    return labels
