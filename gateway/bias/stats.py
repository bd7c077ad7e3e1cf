"""The disparity tests, from per-segment counts and sums (what the saved queries return).

- **Rates** (refusal rate, error rate): Pearson's chi-square test of independence on the
  segments × {event, no event} table (``scipy.stats.chi2_contingency``, no continuity
  correction); effect size **Cramér's V** = √(χ² / N) (a k × 2 table has min(k, 2) − 1 = 1).
- **Means** (feedback score, output tokens, latency): **Welch's ANOVA** across the segments
  (unequal variances and sizes; computed here from each segment's n, mean and variance, its
  p-value from ``scipy.stats.f``), which for two segments is Welch's t-test
  (``scipy.stats.ttest_ind_from_stats(equal_var=False)``, used then: same p-value, F = t²).
  Effect size **Hedges' g** of the segments with the highest and the lowest mean (Cohen's d
  over their pooled standard deviation, with the small-sample correction).
- **Holm–Bonferroni**: the p-values of one analysis' tests, adjusted for their number
  (``holm``).

scipy (and numpy) are imported inside the test functions only: the serving process runs them
in a child process (``gateway.bias.child``) and never loads either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def rate_test(groups: Sequence[tuple[int, int]]) -> dict:
    """``groups``: ``(events, n)`` per segment (at least two). ``{"statistic", "df", "p", "effect"}``."""
    from scipy.stats import chi2_contingency

    total = sum(n for _, n in groups)
    events = sum(x for x, _ in groups)
    if events == 0 or events == total:  # no variation at all: nothing differs
        return {"statistic": 0.0, "df": len(groups) - 1, "p": 1.0, "effect": 0.0}
    chi2, p, dof, _ = chi2_contingency([[x, n - x] for x, n in groups], correction=False)
    return {"statistic": float(chi2), "df": int(dof), "p": float(p), "effect": math.sqrt(float(chi2) / total)}


def _moments(n: int, total: float, sumsq: float) -> tuple[float, float]:
    mean = total / n
    var = max(0.0, (sumsq - total * total / n) / (n - 1)) if n > 1 else 0.0
    return mean, var


def hedges_g(a: tuple[int, float, float], b: tuple[int, float, float]) -> float:
    """Hedges' g of ``a`` against ``b`` (each ``(n, mean, variance)``): ±inf when both are
    constant and differ."""
    (n1, m1, v1), (n2, m2, v2) = a, b
    dof = n1 + n2 - 2
    pooled = ((n1 - 1) * v1 + (n2 - 1) * v2) / dof if dof > 0 else 0.0
    diff = m1 - m2
    if pooled <= 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    correction = 1 - 3 / (4 * (n1 + n2) - 9) if n1 + n2 > 2 else 1.0
    return diff / math.sqrt(pooled) * correction


def mean_test(groups: Sequence[tuple[int, float, float]]) -> dict:
    """``groups``: ``(n, sum, sum of squares)`` per segment (at least two, each n ≥ 2).
    ``{"statistic", "df", "p", "effect", "test"}``; ``effect`` is Hedges' g of the highest mean
    against the lowest."""
    from scipy.stats import f as f_dist
    from scipy.stats import ttest_ind_from_stats

    moments = [(n, *_moments(n, s, ss)) for n, s, ss in groups]
    hi = max(moments, key=lambda m: m[1])
    lo = min(moments, key=lambda m: m[1])
    effect = hedges_g(hi, lo)
    if all(v == 0 for _, _, v in moments):  # constant within every segment
        same = hi[1] == lo[1]
        return {"statistic": 0.0 if same else math.inf, "df": [len(groups) - 1, None], "p": 1.0 if same else 0.0,
                "effect": effect, "test": "welch"}
    # a constant segment beside varying ones: a variance floor far below the others' keeps the
    # weights finite without changing the answer
    floor = max(v for _, _, v in moments) * 1e-12
    moments = [(n, m, max(v, floor)) for n, m, v in moments]
    if len(moments) == 2:
        (n1, m1, v1), (n2, m2, v2) = moments
        t, p = ttest_ind_from_stats(m1, math.sqrt(v1), n1, m2, math.sqrt(v2), n2, equal_var=False)
        a, b = v1 / n1, v2 / n2
        df2 = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
        return {"statistic": float(t) ** 2, "df": [1, df2], "p": float(p), "effect": effect, "test": "welch-t"}
    stat, df1, df2 = welch_anova(moments)
    return {"statistic": stat, "df": [df1, df2], "p": float(f_dist.sf(stat, df1, df2)), "effect": effect,
            "test": "welch-anova"}


def welch_anova(moments: Sequence[tuple[int, float, float]]) -> tuple[float, int, float]:
    """Welch's F and its degrees of freedom from ``(n, mean, variance)`` per group (variances > 0)."""
    k = len(moments)
    w = [n / v for n, _, v in moments]
    wsum = sum(w)
    grand = sum(wi * m for wi, (_, m, _) in zip(w, moments)) / wsum
    a = sum(wi * (m - grand) ** 2 for wi, (_, m, _) in zip(w, moments)) / (k - 1)
    tmp = sum((1 - wi / wsum) ** 2 / (n - 1) for wi, (n, _, _) in zip(w, moments))
    b = 1 + 2 * (k - 2) / (k * k - 1) * tmp
    return a / b, k - 1, (k * k - 1) / (3 * tmp)


def run_tests(tests: Sequence[dict]) -> list[dict]:
    """Each ``{"kind": "rate" | "mean", "groups": [...]}`` → its ``rate_test``/``mean_test``."""
    out = []
    for t in tests:
        if t["kind"] == "rate":
            out.append({**rate_test([tuple(g) for g in t["groups"]]), "test": "chi-square"})
        else:
            out.append(mean_test([tuple(g) for g in t["groups"]]))
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given (pure Python)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted
