"""Accuracy CI, McNemar, paired bootstrap and summary statistics against independent computations.

python -m pytest tests/qc2c/eval/test_metrics.py -q

scipy is not a dependency, so references are computed here from first principles: the Wilson bounds as roots
of their defining quadratic, exact binomial tails by enumeration, chi-square tails by numerical integration of
the normal density, bootstrap intervals by plain index resampling.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qc2c.eval.metrics import (
    EXACT_BELOW,
    Z95,
    accuracy,
    chi2_sf_1df,
    mcnemar,
    paired_bootstrap,
    summary,
    wilson_interval,
)


def _outcomes(n_both: int, n_only_a: int, n_only_b: int, n_neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * n_both + [True] * n_only_a + [False] * n_only_b + [False] * n_neither
    b = [True] * n_both + [False] * n_only_a + [True] * n_only_b + [False] * n_neither
    return a, b


# ---- Wilson ----


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (score interval without correction)
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_published_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(low, abs=5e-5) and got[1] == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(("k", "n"), [(1, 2), (3, 10), (50, 70), (699, 700), (1, 5700)])
def test_wilson_bounds_are_roots_of_the_score_quadratic(k, n):
    # |p_hat - p| = z sqrt(p(1-p)/n)  <=>  (1 + z²/n) p² - (2 p_hat + z²/n) p + p_hat² = 0
    p_hat, z2 = k / n, Z95**2
    qa, qb, qc = 1 + z2 / n, -(2 * p_hat + z2 / n), p_hat**2
    disc = math.sqrt(qb * qb - 4 * qa * qc)
    assert wilson_interval(k, n) == pytest.approx(((-qb - disc) / (2 * qa), (-qb + disc) / (2 * qa)), abs=1e-12)


def test_accuracy_counts_and_all_correct_edge():
    acc = accuracy([True, False, True, True])
    assert (acc.n, acc.n_correct, acc.accuracy) == (4, 3, 0.75)
    assert acc.ci95 == wilson_interval(3, 4)
    perfect = accuracy([True] * 12)
    assert perfect.accuracy == 1.0 and perfect.ci95[1] == 1.0 and perfect.ci95[0] < 1.0
    none = accuracy([False] * 12)
    assert none.accuracy == 0.0 and none.ci95[0] == 0.0 and none.ci95[1] > 0.0


@pytest.mark.parametrize("call", [lambda: accuracy([]), lambda: wilson_interval(0, 0), lambda: summary([])])
def test_zero_samples_is_a_clear_error(call):
    with pytest.raises(ValueError, match="no samples"):
        call()


def test_non_boolean_outcomes_are_refused():
    with pytest.raises(ValueError, match="booleans"):
        accuracy([1, 2, 0])
    with pytest.raises(ValueError, match="n_correct"):
        wilson_interval(5, 4)


# ---- McNemar ----


def _exact_reference(b: int, c: int) -> float:
    """Two-sided exact p: total probability of outcomes no more likely than the observed one, Bin(b+c, 1/2)."""
    n = b + c
    pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
    observed = pmf[b]
    return min(1.0, sum(p for p in pmf if p <= observed * (1 + 1e-12)))


def _chi2_1df_tail_by_integration(x: float) -> float:
    """P[Z² > x] = 2 ∫_{√x}^{∞} φ(u) du by the trapezoid rule."""
    u = np.linspace(math.sqrt(x), math.sqrt(x) + 40.0, 400_001)
    phi = np.exp(-(u**2) / 2) / math.sqrt(2 * math.pi)
    return float(2 * np.sum((phi[1:] + phi[:-1]) / 2 * np.diff(u)))


@pytest.mark.parametrize(("b", "c"), [(1, 0), (5, 0), (3, 4), (10, 2), (0, 12), (12, 12), (20, 4)])
def test_mcnemar_exact_for_few_discordant_pairs(b, c):
    a_correct, b_correct = _outcomes(30, b, c, 7)
    result = mcnemar(a_correct, b_correct)
    assert (result.n_only_a, result.n_only_b, result.method) == (b, c, "exact")
    assert result.p_value == pytest.approx(_exact_reference(b, c), rel=1e-12)


@pytest.mark.parametrize(("b", "c"), [(150, 86), (13, 12), (40, 20), (100, 100)])
def test_mcnemar_chi2_with_continuity_correction_for_many(b, c):
    # (150, 86): Agresti, Categorical Data Analysis, presidential approval ratings (Table 10.1)
    result = mcnemar(*_outcomes(794, b, c, 570))
    assert b + c >= EXACT_BELOW and result.method == "chi2_cc"
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    assert result.p_value == pytest.approx(_chi2_1df_tail_by_integration(statistic), rel=1e-6)


def test_chi2_tail_at_the_textbook_critical_value():
    assert chi2_sf_1df(Z95**2) == pytest.approx(0.05, rel=1e-12)
    assert chi2_sf_1df(0.0) == 1.0


def test_identical_predictions_give_p_one():
    outcomes = [True, False, True, True, False]
    result = mcnemar(outcomes, outcomes)
    assert result.p_value == 1.0 and result.method == "no_discordant_pairs"


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        mcnemar([True, True, False], [True, False])


# ---- paired bootstrap ----


def test_bootstrap_identical_predictions_give_zero_diff():
    outcomes = [True, False, True] * 20
    result = paired_bootstrap(outcomes, outcomes, seed=3)
    assert result.diff == 0.0 and result.ci95 == (0.0, 0.0)


def test_bootstrap_diff_is_the_accuracy_difference_and_seeded():
    rng = np.random.default_rng(11)
    a, b = rng.random(400) < 0.62, rng.random(400) < 0.55
    first = paired_bootstrap(a, b, seed=7)
    assert first.diff == pytest.approx(a.mean() - b.mean(), abs=1e-15)
    assert first == paired_bootstrap(a, b, seed=7)
    # with few resamples the interpolated percentiles depend on the draws, so another seed moves them
    assert paired_bootstrap(a, b, n_resamples=50, seed=7) == paired_bootstrap(a, b, n_resamples=50, seed=7)
    assert paired_bootstrap(a, b, n_resamples=50, seed=7).ci95 != paired_bootstrap(a, b, n_resamples=50, seed=8).ci95
    assert first.ci95[0] < first.diff < first.ci95[1]


def test_bootstrap_interval_matches_index_resampling():
    rng = np.random.default_rng(5)
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.6
    d = a.astype(float) - b.astype(float)
    idx = rng.integers(0, len(d), size=(20_000, len(d)))
    reference = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    got = paired_bootstrap(a, b, n_resamples=20_000, seed=1).ci95
    assert got == pytest.approx(tuple(reference), abs=0.006)  # Monte Carlo error of both at R = 20k


def test_bootstrap_when_one_setting_is_always_right():
    result = paired_bootstrap([True] * 10, [False] * 10)
    assert result.diff == 1.0 and result.ci95 == (1.0, 1.0)


# ---- summary ----


def _percentile_type7(values: list[float], q: float) -> float:
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


@pytest.mark.parametrize("values", [[5.0], [3.0, 1.0], [1, 2, 3, 4, 100], list(range(1, 21)), [0.5] * 7])
def test_summary_against_the_order_statistic_definition(values):
    got = summary(values)
    assert got.n == len(values)
    assert got.mean == pytest.approx(sum(values) / len(values))
    assert got.p50 == pytest.approx(_percentile_type7(values, 0.5))
    assert got.p95 == pytest.approx(_percentile_type7(values, 0.95))


def test_summary_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        summary([1.0, float("nan")])
