r"""Two-sample statistics for comparing protocols over seeds (SciPy,
statsmodels).

Every comparison in `plot.py` is between two groups of runs that differ only
in their seeds: a = (a_1, ..., a_m) and b = (b_1, ..., b_n), e.g. the best
test accuracy of m constant runs and of n random runs. With sample means
a_bar, b_bar, sample variances s_a^2, s_b^2 (ddof = 1) and d = a_bar - b_bar:

* Welch's t-test (H0: equal means): se^2 = s_a^2 / m + s_b^2 / n,
  t = d / se, Welch-Satterthwaite degrees of freedom
  nu = se^4 / ((s_a^2 / m)^2 / (m - 1) + (s_b^2 / n)^2 / (n - 1)),
  p = 2 P(T_nu > |t|). Same numbers as
  `scipy.stats.ttest_ind(a, b, equal_var=False)`.
* Equivalence (TOST, two one-sided Welch t-tests) with margin delta stated
  in advance: H0 is |mu_a - mu_b| >= delta. p_lower = P(T_nu > (d + delta)
  / se) tests d <= -delta, p_upper = P(T_nu < (d - delta) / se) tests
  d >= delta, and p_TOST = max(p_lower, p_upper). Equivalence is shown at
  level alpha when p_TOST < alpha, i.e. when the (1 - 2 alpha) confidence
  interval of d lies inside (-delta, delta).
* Minimum detectable effect (MDE): the smallest true difference that a
  two-sided Welch test at level alpha detects with probability `power`, for
  normal data with the common standard deviation sigma = s_p, the pooled
  sample std s_p^2 = ((m - 1) s_a^2 + (n - 1) s_b^2) / (m + n - 2), and the
  group sizes m, n. See `minimum_detectable_effect` for its formula.

* Paired versions, for groups whose runs pair up by seed (runs with the same
  seed share the initial weights and the alpha stream, so most of the
  spread between seeds cancels in their differences): with the n paired
  differences d_i = a_i - b_i, mean d and sample std s_d, se = s_d / sqrt(n)
  and nu = n - 1, the paired t-test p = 2 P(T_nu > |d| / se) (as
  `scipy.stats.ttest_rel`) and the paired TOST with the same two one-sided
  tests as above.

Undefined results (a group with fewer than two values, zero variance in
both groups) are NaN.

References:
    B. L. Welch, "The generalization of 'Student's' problem when several
    different population variances are involved", Biometrika, 1947.
    D. J. Schuirmann, "A comparison of the two one-sided tests procedure and
    the power approach for assessing the equivalence of average
    bioavailability", J. Pharmacokinetics and Biopharmaceutics, 1987.
"""

import collections
import functools
import math

import numpy as np
from scipy import optimize
from scipy import special
from scipy import stats
from statsmodels.stats import weightstats

WelchResult = collections.namedtuple(
    "WelchResult", ["difference", "standard_error", "df", "t", "p"])


def _clean(values):
    """Returns the finite, non-None values as a float array."""
    array = np.array([v for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]


def mean_std(values):
    """Returns (mean, sample std with ddof = 1) of the values.

    None and non-finite values are left out; (NaN, NaN) if none is left and
    std 0 for a single value.
    """
    array = _clean(values)
    if array.size == 0:
        return math.nan, math.nan
    if array.size == 1:
        return float(array[0]), 0.0
    return float(array.mean()), float(array.std(ddof=1))


def welch(a, b):
    """Returns Welch's t-test of a against b, as a `WelchResult`.

    Args:
        a, b: sequences of floats (None and non-finite values left out).

    Returns:
        `WelchResult(difference, standard_error, df, t, p)`: d = mean(a) -
        mean(b), se, the Welch-Satterthwaite nu, t = d / se and the
        two-sided p-value; all but d are NaN with fewer than two values in a
        group or zero variance in both.
    """
    a, b = _clean(a), _clean(b)
    difference = (float(a.mean() - b.mean()) if a.size and b.size
                  else math.nan)
    if a.size < 2 or b.size < 2:
        return WelchResult(difference, math.nan, math.nan, math.nan, math.nan)
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if var_a + var_b == 0:
        return WelchResult(difference, 0.0, math.nan, math.nan, math.nan)
    standard_error = math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (a.size - 1)
                                 + var_b ** 2 / (b.size - 1))
    t = difference / standard_error
    p = 2 * stats.t.sf(abs(t), df)
    return WelchResult(difference, standard_error, float(df), float(t),
                       float(p))


def tost(a, b, margin):
    """Returns the p-value of the TOST equivalence test of a and b.

    Two one-sided Welch t-tests (Schuirmann's TOST) of H0: |mu_a - mu_b| >=
    `margin` against H1: |mu_a - mu_b| < `margin`:

        p = max(P(T_nu > (d + margin) / se), P(T_nu < (d - margin) / se))

    with d, se and nu of `welch(a, b)`: statsmodels'
    `ttost_ind(a, b, -margin, margin, usevar="unequal")`. A p-value below
    alpha shows equivalence within +-`margin` at level alpha.

    Args:
        a, b: sequences of floats.
        margin: float > 0, the equivalence margin delta, in the units of the
            values, chosen before looking at the data.

    Returns:
        float, NaN where `welch` is undefined.

    Raises:
        ValueError: if `margin` is not a finite number > 0.
    """
    _check_margin(margin)
    a, b = _clean(a), _clean(b)
    if math.isnan(welch(a, b).df):
        return math.nan
    return float(weightstats.ttost_ind(a, b, -margin, margin,
                                       usevar="unequal")[0])


def _check_margin(margin):
    if not (isinstance(margin, (int, float)) and math.isfinite(margin)
            and margin > 0):
        raise ValueError(f"margin must be a finite number > 0, got {margin!r}")


def _pairs(a, b):
    """The pairs (a_i, b_i) with both members finite, as two arrays."""
    if len(a) != len(b):
        raise ValueError(f"paired groups need equal lengths, got {len(a)} "
                         f"and {len(b)}")
    pairs = np.array([(x, y) for x, y in zip(a, b)
                      if x is not None and y is not None
                      and math.isfinite(x) and math.isfinite(y)],
                     dtype=float).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def paired(a, b):
    """Returns the paired t-test of a against b, as a `WelchResult`.

    Args:
        a, b: sequences of floats of equal length, a_i paired with b_i (pairs
            with a None or non-finite member are left out).

    Returns:
        `WelchResult(difference, standard_error, df, t, p)` of the
        differences d_i = a_i - b_i: their mean, s_d / sqrt(n), n - 1, t and
        the two-sided p-value; all but the mean NaN with fewer than two
        pairs or all differences equal.
    """
    a, b = _pairs(a, b)
    differences = a - b
    if differences.size == 0:
        return WelchResult(math.nan, math.nan, math.nan, math.nan, math.nan)
    difference = float(differences.mean())
    if differences.size < 2 or differences.std() == 0:
        return WelchResult(difference, math.nan, math.nan, math.nan, math.nan)
    standard_error = float(differences.std(ddof=1)
                           / math.sqrt(differences.size))
    df = float(differences.size - 1)
    t = difference / standard_error
    return WelchResult(difference, standard_error, df, float(t),
                       float(2 * stats.t.sf(abs(t), df)))


def paired_tost(a, b, margin):
    """Returns the p-value of the paired TOST equivalence test of a and b.

    As `tost`, with d, se and nu of `paired(a, b)`: statsmodels'
    `ttost_paired(a, b, -margin, margin)`.

    Raises:
        ValueError: if `margin` is not a finite number > 0.
    """
    _check_margin(margin)
    if math.isnan(paired(a, b).df):
        return math.nan
    a, b = _pairs(a, b)
    return float(weightstats.ttost_paired(a, b, -margin, margin)[0])


def pooled_std(a, b):
    """Returns s_p = sqrt(((m-1) s_a^2 + (n-1) s_b^2) / (m + n - 2)).

    NaN with fewer than two values in a group.
    """
    a, b = _clean(a), _clean(b)
    if a.size < 2 or b.size < 2:
        return math.nan
    return math.sqrt(((a.size - 1) * a.var(ddof=1)
                      + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))


# Quantile grid for the expectation over the two sample variances: the
# midpoint rule in probability space; 200 points per variance give the
# power to about 1e-4.
_GRID_POINTS = 200


@functools.lru_cache(maxsize=64)
def _welch_rejection_grid(m, n, alpha):
    """Returns (c * se_hat, sd of d) on the variance grid, for sigma = 1."""
    u = (np.arange(_GRID_POINTS) + 0.5) / _GRID_POINTS
    # (m - 1) s_a^2 / sigma^2 ~ chi2(m - 1), independently for b.
    var_a = stats.chi2.ppf(u, m - 1) / (m - 1) / m
    var_b = stats.chi2.ppf(u, n - 1) / (n - 1) / n
    var_a, var_b = np.meshgrid(var_a, var_b, indexing="ij")
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (m - 1) + var_b ** 2 / (n - 1))
    threshold = stats.t.ppf(1 - alpha / 2, df) * np.sqrt(var_a + var_b)
    return threshold, math.sqrt(1 / m + 1 / n)


def welch_power(effect, m, n, *, alpha=0.05):
    """Returns the power of the two-sided Welch test, sigma = 1.

    The probability that Welch's test at level `alpha` rejects equal means
    when the true difference is `effect` standard deviations, both groups
    normal with the same standard deviation; see
    `minimum_detectable_effect` for the formula.

    Args:
        effect: float, the true difference in units of sigma.
        m, n: int >= 2, the group sizes.
        alpha: float in (0, 1). Defaults to `0.05`.

    Returns:
        float in [0, 1].
    """
    threshold, sd = _welch_rejection_grid(int(m), int(n), float(alpha))
    return float(np.mean(special.ndtr((effect - threshold) / sd)
                         + special.ndtr((-effect - threshold) / sd)))


def minimum_detectable_effect(std, m, n, *, alpha=0.05, power=0.8):
    r"""Returns the smallest difference a two-sided Welch test detects.

    For two groups of normal values with the common standard deviation
    sigma = `std` (the pooled sample std s_p of `pooled_std`) and sizes m,
    n, the MDE is the true difference delta at which Welch's test at level
    `alpha` rejects with probability `power`:

        power = E[ Phi((delta - c se_hat) / (sigma k))
                   + Phi((-delta - c se_hat) / (sigma k)) ],
        k = sqrt(1/m + 1/n),  se_hat^2 = s_a^2 / m + s_b^2 / n,
        c = t_{1 - alpha/2}(nu_hat)  (nu_hat: Welch-Satterthwaite of s_a, s_b),

    the expectation over the independent sample variances
    (m - 1) s_a^2 / sigma^2 ~ chi2(m - 1), (n - 1) s_b^2 / sigma^2 ~
    chi2(n - 1) (the mean difference is independent of them and normal,
    N(delta, sigma^2 k^2), which gives the Phi terms). The expectation is a
    midpoint rule on a 200 x 200 grid of chi2 quantiles, and delta is found
    with Brent's method. For large groups this tends to the textbook
    (z_{1 - alpha/2} + z_{power}) sigma k = 2.80 sigma k; for a few seeds it
    is much larger than the textbook (t_{1 - alpha/2}(nu) + t_{power}(nu))
    sigma k with nu = m + n - 2 (4.30 against 3.72 sigma k at m = n = 3,
    10.4 against 5.4 at m = n = 2), because Welch's test estimates two
    variances from few values and uses fewer degrees of freedom.

    Why not statsmodels' `TTestIndPower().solve_power`: it is the power of
    Student's pooled t-test (a noncentral t with m + n - 2 degrees of
    freedom), not of the Welch test that the tables run. With the few seeds
    of a sweep Welch's test is weaker, so solve_power would understate the
    difference our test can detect: 3.07 against 3.51 sigma at m = n = 3,
    5.65 against 10.4 at m = n = 2; the two agree for large groups (2e-4
    sigma apart at m = n = 50, tested).

    Args:
        std: float, sigma (use the pooled sample std).
        m, n: int, the group sizes.
        alpha: float in (0, 1), the test's level. Defaults to `0.05`.
        power: float in (alpha, 1). Defaults to `0.8`.

    Returns:
        float, in the units of `std`; NaN if a group has fewer than two
        values or `std` is not a finite number > 0.
    """
    if m < 2 or n < 2 or not (math.isfinite(std) and std > 0):
        return math.nan
    if not 0 < alpha < power < 1:
        raise ValueError(
            f"need 0 < alpha < power < 1, got alpha={alpha!r}, power={power!r}")

    def shortfall(effect):
        return welch_power(effect, m, n, alpha=alpha) - power

    upper = 1.0
    while shortfall(upper) < 0:
        upper *= 2
    effect = optimize.brentq(shortfall, 0.0, upper, xtol=1e-10)
    return float(effect * std)
