"""The drift statistics (``gateway/dashboard/psi.py``) against hand-computed values and known
distributions, and the drift table's rendering."""

from __future__ import annotations

import math
import random

import pytest

from gateway.dashboard import psi
from gateway.dashboard.drift import render_table


def test_psi_hand_computed():
    # shares 0.25 each against 0.1/0.2/0.3/0.4:
    # (−.15)ln(.4) + (−.05)ln(.8) + (.05)ln(1.2) + (.15)ln(1.6)
    # = .137444 + .011157 + .009116 + .070501 = .228218
    assert psi.psi([25, 25, 25, 25], [10, 20, 30, 40]) == pytest.approx(0.228218, abs=1e-6)
    terms = psi.psi_terms([25, 25, 25, 25], [10, 20, 30, 40])
    assert terms == pytest.approx([0.137444, 0.011157, 0.009116, 0.070501], abs=1e-6)
    # counts or shares, any totals: only the shares matter
    assert psi.psi([1, 1, 1, 1], [100, 200, 300, 400]) == pytest.approx(0.228218, abs=1e-6)
    assert psi.psi([3, 5, 2], [3, 5, 2]) == 0.0
    # symmetric (it is the Jeffreys divergence over the bins)
    assert psi.psi([10, 20, 30, 40], [25, 25, 25, 25]) == pytest.approx(0.228218, abs=1e-6)


def test_psi_empty_bin_uses_epsilon():
    # third bin: reference 0 → 1e-4; (0.1 − 0.0001)·ln(0.1/0.0001) = 0.0999·6.907755 = 0.690085
    # plus (0.4 − 0.5)·ln(0.8) = 0.022314, plus 0 for the first bin
    assert psi.psi([50, 50, 0], [50, 40, 10]) == pytest.approx(0.690085 + 0.022314, abs=1e-5)
    assert psi.psi([0, 0], [0, 0]) == 0.0
    with pytest.raises(ValueError):
        psi.psi([1, 2], [1, 2, 3])


def test_categorical_psi_counts_missing_categories_as_zero():
    ref = {"stop": 90, "length": 10}
    cur = {"stop": 60, "length": 30, "tool_calls": 10}
    expected = psi.psi([10, 90, 0], [30, 60, 10])  # keys sorted: length, stop, tool_calls
    assert psi.categorical_psi(ref, cur) == pytest.approx(expected)
    # length 10% → 30%: (.2)ln(3) = .219722; stop 90% → 60%: (−.3)ln(2/3) = .121640; tool_calls: .0999·ln(1000)
    assert expected == pytest.approx(0.219722 + 0.121640 + 0.0999 * math.log(1000), abs=1e-5)


def test_quantiles_edges_and_bins():
    assert psi.quantile_levels(10) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert psi.quantile_levels(4) == [0.25, 0.5, 0.75]
    with pytest.raises(ValueError):
        psi.quantile_levels(1)
    assert psi.quantile(list(range(11)), 0.1) == 1.0  # position q·(n−1), as quantileExactInclusive
    assert psi.quantile([1, 2, 3, 4], 0.5) == 2.5
    assert psi.edges_from_quantiles([3, 1, 1, None, 2, float("nan"), 2]) == [1.0, 2.0, 3.0]
    # many identical values collapse into fewer bins
    assert psi.reference_edges([100] * 90 + [200] * 10, bins=10) == pytest.approx([100.0, 110.0])
    edges = [10.0, 20.0]
    assert [psi.bin_index(x, edges) for x in (5, 10, 10.5, 20, 25)] == [0, 0, 1, 1, 2]  # (a, b]
    assert psi.histogram([5, 10, 10.5, 20, 25, 30], edges) == [2, 2, 2]
    assert psi.shares([1, 3]) == [0.25, 0.75] and psi.shares([0, 0]) == [0.0, 0.0]
    assert psi.bin_labels([10, 20]) == ["≤ 10", "10–20", "> 20"] and psi.bin_labels([]) == ["all"]


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _normal_inv(p: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _normal_cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def _decile_psi_for_shift(d: float, sigma: float = 1.0) -> float:
    """Exact PSI of N(d, sigma²) against N(0, 1) over N(0, 1)'s deciles."""
    edges = [_normal_inv(q) for q in psi.quantile_levels(10)]
    cuts = [-math.inf] + edges + [math.inf]
    cur = [_normal_cdf((b - d) / sigma) - _normal_cdf((a - d) / sigma) for a, b in zip(cuts, cuts[1:])]
    return psi.psi([0.1] * 10, cur)


def test_known_normal_distributions():
    # analytic decile PSI of a mean shift approaches d² (the Jeffreys divergence) from below
    assert _decile_psi_for_shift(0.5) == pytest.approx(0.2377, abs=0.0005)  # d² = 0.25 with infinitely many bins
    assert _decile_psi_for_shift(0.5) < 0.25 < _decile_psi_for_shift(0.6)
    assert _decile_psi_for_shift(0.1) == pytest.approx(0.0096, abs=0.0002)
    assert _decile_psi_for_shift(1.0) == pytest.approx(0.926, abs=0.001)
    # the same from samples through the whole chain: reference quantile edges, bins, PSI
    rng = random.Random(7)
    ref = [rng.gauss(0, 1) for _ in range(40_000)]
    same = [rng.gauss(0, 1) for _ in range(40_000)]
    shifted = [rng.gauss(0.5, 1) for _ in range(40_000)]
    wider = [rng.gauss(0, 2) for _ in range(40_000)]
    edges = psi.reference_edges(ref, 10)
    assert len(edges) == 9
    base = psi.histogram(ref, edges)
    assert all(abs(c - 4000) <= 2 for c in base)  # deciles of the reference: equal shares
    stable = psi.psi(base, psi.histogram(same, edges))
    assert stable < 0.005 and psi.psi_level(stable) == psi.OK
    moved = psi.psi(base, psi.histogram(shifted, edges))
    assert moved == pytest.approx(_decile_psi_for_shift(0.5), abs=0.02) and psi.psi_level(moved) == psi.WARN
    spread = psi.psi(base, psi.histogram(wider, edges))
    assert spread == pytest.approx(_decile_psi_for_shift(0.0, sigma=2.0), abs=0.03)
    assert psi.psi_level(spread) == psi.DRIFT
    big = psi.psi(base, psi.histogram([rng.gauss(1.0, 1) for _ in range(40_000)], edges))
    assert big > 0.8 and psi.psi_level(big) == psi.DRIFT


def test_levels_and_thresholds():
    assert [psi.psi_level(v) for v in (None, 0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == \
        ["n/a", "ok", "ok", "warn", "warn", "drift", "drift"]
    assert psi.psi_level(0.15, warn=0.2, drift=0.3) == "ok"
    assert psi.worst(["ok", "n/a", "warn"]) == "warn" and psi.worst([]) == "n/a"
    assert psi.worst(["drift", "ok"]) == "drift"
    assert psi.rise_level(z=5, change=0.05, min_change=0.01) == "drift"
    assert psi.rise_level(z=2.5, change=0.05, min_change=0.01) == "warn"
    assert psi.rise_level(z=9, change=0.005, min_change=0.01) == "ok"  # significant but tiny
    assert psi.rise_level(z=-9, change=-0.05, min_change=0.01) == "ok"  # fewer errors is fine
    assert psi.drop_level(z=-4, d=-0.5) == "drift" and psi.drop_level(z=-2.5, d=-0.5) == "warn"
    assert psi.drop_level(z=-9, d=-0.1) == "ok" and psi.drop_level(z=4, d=0.5) == "ok"


def test_rate_and_mean_tests_hand_computed():
    # 10/1000 → 30/1000: pooled .02, se = sqrt(.02·.98·(2/1000)) = .0062610, z = .02/.0062610 = 3.1944
    assert psi.two_proportion_z(10, 1000, 30, 1000) == pytest.approx(3.1944, abs=1e-4)
    assert psi.two_proportion_z(0, 100, 0, 100) == 0.0
    with pytest.raises(ValueError):
        psi.two_proportion_z(0, 0, 1, 10)
    # means .8 (var .16, n 100) → .6 (var .24, n 50): se = sqrt(.0016 + .0048) = .08, z = −2.5
    assert psi.welch_z(0.8, 0.16, 100, 0.6, 0.24, 50) == pytest.approx(-2.5)
    # pooled var (99·.16 + 49·.24)/148 = .186486, d = −.2/.431841 = −.46313
    assert psi.cohens_d(0.8, 0.16, 100, 0.6, 0.24, 50) == pytest.approx(-0.46313, abs=1e-5)
    assert psi.welch_z(1.0, 0, 30, 0.0, 0, 30) == -math.inf and psi.welch_z(1.0, 0, 30, 1.0, 0, 30) == 0.0
    assert psi.cohens_d(1.0, 0, 30, 0.0, 0, 30) == -math.inf


def test_render_table_names_what_drifted():
    result = {
        "filters": {"tenant": "", "model": "chat", "backend": "", "prompt": ""},
        "windows": {"reference": {"from": 0, "to": 604800000, "requests": 700},
                    "current": {"from": 604800000, "to": 691200000, "requests": 300}},
        "level": "drift", "flagged": True,
        "checks": [
            {"name": "prompt_tokens", "kind": "psi", "value": 1.234, "level": "drift", "reference_n": 690,
             "current_n": 280, "reference_p50": 200.0, "current_p50": 500.0, "detail": "PSI 1.234 over 10 bins"},
            {"name": "finish_reason", "kind": "psi", "value": 0.05, "level": "ok", "reference_n": 690,
             "current_n": 280, "categories": [{"category": "length", "reference": 0.05, "current": 0.06},
                                              {"category": "stop", "reference": 0.95, "current": 0.94}],
             "detail": ""},
            {"name": "error_rate", "kind": "rate", "value": 1.2, "level": "ok", "reference": 0.01, "current": 0.012,
             "reference_errors": 7, "current_errors": 4, "reference_n": 700, "current_n": 300, "detail": ""},
            {"name": "feedback_score", "kind": "mean", "value": None, "level": "n/a", "reference": None,
             "current": None, "reference_n": 0, "current_n": 0, "detail": "needs 20 scores in each window"},
        ]}
    text = render_table(result)
    assert "drift for model=chat" in text and "1970-01-01 00:00" in text
    assert "prompt_tokens" in text and "PSI 1.234" in text and "DRIFT" in text
    assert "DRIFT: prompt_tokens" in text and "1.00% (7/700)" in text
    assert "no drift" in render_table({**result, "checks": result["checks"][1:]})
