"""Tests for experiments/_stats.py against SciPy and hand computations."""

import math

import numpy as np
import pytest
from scipy import stats

from rlr_keras.experiment import _stats  # noqa: E402

pytestmark = pytest.mark.backend_independent

# Fixed numbers in the range of the paper's accuracies.
_A = [0.9440, 0.9452, 0.9431, 0.9447, 0.9436]
_B = [0.9444, 0.9460, 0.9429, 0.9455]


def test_mean_std_is_sample_std_and_skips_missing():
    assert _stats.mean_std([1.0, None, 3.0, math.nan]) == (2.0, math.sqrt(2))
    assert _stats.mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in _stats.mean_std([None]))


def test_welch_matches_scipy():
    result = _stats.welch(_A, _B)
    expected = stats.ttest_ind(_A, _B, equal_var=False)
    np.testing.assert_allclose(result.t, expected.statistic, rtol=1e-12)
    np.testing.assert_allclose(result.p, expected.pvalue, rtol=1e-12)
    np.testing.assert_allclose(result.df, expected.df, rtol=1e-12)
    np.testing.assert_allclose(result.difference, np.mean(_A) - np.mean(_B))


def test_welch_is_undefined_for_one_value_or_no_variance():
    assert math.isnan(_stats.welch([0.9], [0.8, 0.7]).p)
    assert math.isnan(_stats.welch([0.9, 0.9], [0.8, 0.8]).p)
    assert math.isnan(_stats.tost([0.9, 0.9], [0.8, 0.8], 0.005))


def test_tost_matches_hand_computation_with_t_distribution():
    margin = 0.005
    a, b = np.array(_A), np.array(_B)
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (a.size - 1)
                                 + var_b ** 2 / (b.size - 1))
    d = a.mean() - b.mean()
    expected = max(1 - stats.t.cdf((d + margin) / se, df),
                   stats.t.cdf((d - margin) / se, df))
    np.testing.assert_allclose(_stats.tost(_A, _B, margin), expected,
                               rtol=1e-10)
    assert expected < 0.05  # These groups are equivalent within 0.005.


def test_tost_is_the_larger_of_two_shifted_one_sided_scipy_tests():
    margin = 0.001
    a = np.array(_A)
    lower = stats.ttest_ind(a + margin, _B, equal_var=False,
                            alternative="greater").pvalue
    upper = stats.ttest_ind(a - margin, _B, equal_var=False,
                            alternative="less").pvalue
    np.testing.assert_allclose(_stats.tost(_A, _B, margin),
                               max(lower, upper), rtol=1e-10)


@pytest.mark.parametrize("margin", [0.0005, 0.001, 0.002, 0.005])
def test_tost_shows_equivalence_iff_90_percent_interval_inside_margin(margin):
    interval = stats.ttest_ind(_A, _B, equal_var=False).confidence_interval(
        confidence_level=0.90)
    inside = -margin < interval.low and interval.high < margin
    assert (_stats.tost(_A, _B, margin) < 0.05) == inside


def test_tost_rejects_a_non_positive_margin():
    with pytest.raises(ValueError, match="margin must be a finite number > 0"):
        _stats.tost(_A, _B, 0.0)


def test_pooled_std_closed_form():
    a, b = np.array(_A), np.array(_B)
    squares = np.sum((a - a.mean()) ** 2) + np.sum((b - b.mean()) ** 2)
    expected = math.sqrt(squares / (a.size + b.size - 2))
    np.testing.assert_allclose(_stats.pooled_std(_A, _B), expected, rtol=1e-12)


@pytest.mark.parametrize("m,n", [(3, 3), (5, 5), (3, 5), (2, 4)])
def test_mde_gives_80_percent_power_to_simulated_welch_tests(m, n):
    # Brute force: draw many pairs of normal groups whose means differ by
    # the MDE and count how often scipy's Welch test rejects at 0.05.
    std = 0.002
    effect = _stats.minimum_detectable_effect(std, m, n)
    trials = 20000
    rng = np.random.default_rng(1234 + 10 * m + n)
    a = rng.normal(0.0, std, size=(trials, m))
    b = rng.normal(effect, std, size=(trials, n))
    rejected = stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05
    standard_error = math.sqrt(0.8 * 0.2 / trials)
    assert abs(rejected.mean() - 0.8) < 4 * standard_error


def test_mde_tends_to_the_normal_closed_form_for_large_groups():
    m, n, std = 4000, 6000, 0.01
    closed_form = ((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * std
                   * math.sqrt(1 / m + 1 / n))
    np.testing.assert_allclose(
        _stats.minimum_detectable_effect(std, m, n), closed_form, rtol=2e-3)


def test_mde_is_linear_in_std_and_undefined_for_one_seed():
    np.testing.assert_allclose(
        _stats.minimum_detectable_effect(0.004, 3, 4),
        2 * _stats.minimum_detectable_effect(0.002, 3, 4), rtol=1e-8)
    assert math.isnan(_stats.minimum_detectable_effect(0.002, 1, 4))
    assert math.isnan(_stats.minimum_detectable_effect(0.0, 3, 4))


def test_paired_matches_scipy_ttest_rel():
    a, b = _A[:4], _B
    result = _stats.paired(a, b)
    expected = stats.ttest_rel(a, b)
    np.testing.assert_allclose(result.t, expected.statistic, rtol=1e-12)
    np.testing.assert_allclose(result.p, expected.pvalue, rtol=1e-12)
    assert result.df == 3


def test_paired_tost_matches_hand_computation():
    a, b, margin = _A[:4], _B, 0.002
    d = np.subtract(a, b)
    se = d.std(ddof=1) / np.sqrt(d.size)
    expected = max(stats.t.sf((d.mean() + margin) / se, d.size - 1),
                   stats.t.cdf((d.mean() - margin) / se, d.size - 1))
    assert _stats.paired_tost(a, b, margin) == pytest.approx(expected,
                                                             rel=1e-12)


def test_pairing_shows_equivalence_that_the_seed_spread_hides():
    # Large spread between seeds, tiny and steady differences within seeds.
    base = np.array([0.70, 0.74, 0.72, 0.76, 0.71])
    a, b = base + 0.0001, base - 0.0001 * np.array([1, 2, 1, 2, 1])
    assert _stats.tost(a, b, 0.005) > 0.05
    assert _stats.paired_tost(a, b, 0.005) < 1e-6


def test_paired_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        _stats.paired([1.0, 2.0], [1.0])


def test_mde_is_statsmodels_student_power_for_large_groups_only():
    """statsmodels' solve_power is Student's pooled t-test: it agrees with
    the Welch MDE for large groups and understates it for a few seeds (why
    `minimum_detectable_effect` does not use it)."""
    from statsmodels.stats.power import TTestIndPower

    def student(m):
        return TTestIndPower().solve_power(nobs1=m, alpha=0.05, power=0.8,
                                           ratio=1.0)

    assert _stats.minimum_detectable_effect(1.0, 50, 50) == pytest.approx(
        student(50), abs=1e-3)
    assert _stats.minimum_detectable_effect(1.0, 3, 3) > student(3) + 0.4
    assert _stats.minimum_detectable_effect(1.0, 2, 2) > student(2) + 4.0
