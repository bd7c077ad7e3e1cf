"""The bias tests against hand-computed values and scipy's own tests on raw samples."""

from __future__ import annotations

import math
import random

import pytest

from gateway.bias.stats import hedges_g, holm, mean_test, rate_test, welch_anova


def sums(values: list[float]) -> tuple[int, float, float]:
    return len(values), sum(values), sum(v * v for v in values)


def test_holm_adjusts_in_order_and_keeps_monotone():
    # sorted 0.01, 0.03, 0.04 → ×3, ×2, ×1 = 0.03, 0.06, 0.04 → running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_chi_square_and_cramers_v_by_hand():
    groups = [(10, 100), (30, 100)]
    r = rate_test(groups)
    # expected counts 20/80 in both rows: χ² = Σ (o − e)² / e
    chi2 = 2 * (10 ** 2 / 20 + 10 ** 2 / 80)
    assert r["statistic"] == pytest.approx(chi2) and r["df"] == 1
    assert r["effect"] == pytest.approx(math.sqrt(chi2 / 200))
    assert r["p"] == pytest.approx(math.erfc(math.sqrt(chi2 / 2)))  # χ²(1) tail
    assert rate_test([(0, 50), (0, 70)]) == {"statistic": 0.0, "df": 1, "p": 1.0, "effect": 0.0}


def test_welch_matches_scipy_on_raw_samples():
    from scipy.stats import ttest_ind

    rng = random.Random(7)
    a = [rng.gauss(10, 2) for _ in range(40)]
    b = [rng.gauss(11, 5) for _ in range(25)]
    r = mean_test([sums(a), sums(b)])
    t, p = ttest_ind(a, b, equal_var=False)
    assert r["test"] == "welch-t" and r["p"] == pytest.approx(float(p)) and r["statistic"] == pytest.approx(float(t) ** 2)
    # Welch's ANOVA of two groups is Welch's t: F = t², same degrees of freedom
    ma = (len(a), sum(a) / len(a), sum((x - sum(a) / len(a)) ** 2 for x in a) / (len(a) - 1))
    mb = (len(b), sum(b) / len(b), sum((x - sum(b) / len(b)) ** 2 for x in b) / (len(b) - 1))
    f, df1, df2 = welch_anova([ma, mb])
    assert f == pytest.approx(float(t) ** 2) and df1 == 1 and df2 == pytest.approx(r["df"][1])


def test_welch_anova_of_three_groups():
    rng = random.Random(3)
    same = [[rng.gauss(5, 1) for _ in range(30)] for _ in range(3)]
    assert mean_test([sums(g) for g in same])["p"] > 0.01
    apart = [[rng.gauss(mu, 1) for _ in range(30)] for mu in (5, 5, 7)]
    r = mean_test([sums(g) for g in apart])
    assert r["test"] == "welch-anova" and r["p"] < 1e-6 and r["df"][0] == 2 and r["effect"] > 1.5


def test_hedges_g_and_constant_groups():
    # means 3 and 1, both sd 2 (variance 4), n 10 each: d = 1, J = 1 − 3 / (4·20 − 9)
    assert hedges_g((10, 3.0, 4.0), (10, 1.0, 4.0)) == pytest.approx(1 - 3 / 71)
    assert hedges_g((5, 2.0, 0.0), (5, 1.0, 0.0)) == math.inf
    same = mean_test([(5, 5.0, 5.0), (5, 5.0, 5.0)])  # constant 1.0 in both
    assert same["p"] == 1.0 and same["effect"] == 0.0
    apart = mean_test([(5, 5.0, 5.0), (5, 10.0, 20.0)])  # constant 1.0 and 2.0
    assert apart["p"] == 0.0 and apart["effect"] == math.inf


def test_the_analysis_keeps_p_values_at_full_precision():
    """The JSON (``bias --json``, the panel) carries p as computed; only the table rounds it."""
    from gateway.bias.analysis import BiasOptions, _Checks

    checks = _Checks(BiasOptions())
    checks.rate("refusal_rate", {"a": (1, 100), "b": (30, 100)}, [])
    p = 1.2345678912345e-13
    [check] = checks.finish(lambda tests: [{"test": "chi-square", "statistic": 55.0, "df": 1, "p": p,
                                            "effect": 0.4} for _ in tests])
    assert check["p"] == p and check["p_adjusted"] == p and check["level"] == "disparity"
