"""The statistics of run comparisons against scipy and hand computations on fixed data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mdr.stats import cohens_dz, holm, paired_bootstrap_interval, paired_permutation_test, seed_interval


def test_seed_interval_is_the_student_t_interval():
    values = [0.31, 0.35, 0.29, 0.33]
    got = seed_interval(values)
    low, high = scipy_stats.t.interval(0.95, 3, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (got.n, got.mean, got.sd) == (4, pytest.approx(0.32), pytest.approx(np.std(values, ddof=1)))
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    one = seed_interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.sd) and math.isnan(one.low)


def scipy_paired_p(a, b, w=None, n_resamples=np.inf, seed=0):
    w = np.ones(len(a)) if w is None else np.asarray(w)
    res = scipy_stats.permutation_test((np.asarray(a), np.asarray(b)), lambda x, y, axis: np.sum(w * (x - y), axis=axis) / w.sum(),
                                       permutation_type="samples", vectorized=True, n_resamples=n_resamples,
                                       alternative="two-sided", rng=np.random.default_rng(seed))
    return res.pvalue


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_randomisation_p_values_equal_scipys(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random(10), rng.random(10)
    w = rng.integers(1, 4, 10)  # per-query weights: a macro average
    assert paired_permutation_test(a, b) == pytest.approx(scipy_paired_p(a, b), abs=1e-12)
    assert paired_permutation_test(a, b, w) == pytest.approx(scipy_paired_p(a, b, w), abs=1e-12)


def test_monte_carlo_randomisation_p_values_agree_with_scipys():
    rng = np.random.default_rng(3)
    a = rng.random(300)
    b = a - 0.03 + rng.normal(0, 0.25, 300)  # a small effect: p in the middle of (0, 1)
    ours = paired_permutation_test(a, b, n_resamples=20000, seed=1)
    theirs = scipy_paired_p(a, b, n_resamples=20000, seed=2)
    assert 0.01 < theirs < 0.5 and ours == pytest.approx(theirs, abs=0.02)  # Monte Carlo sd ~0.004


def test_bootstrap_percentile_interval_agrees_with_scipys():
    rng = np.random.default_rng(4)
    a, b = rng.random(200), rng.random(200)
    w = rng.integers(1, 4, 200).astype(float)
    ours = paired_bootstrap_interval(a, b, w, n_resamples=20000, seed=1)
    res = scipy_stats.bootstrap((a, b, w), lambda x, y, v, axis: np.sum(v * (x - y), axis=axis) / np.sum(v, axis=axis),
                                paired=True, vectorized=True, method="percentile", n_resamples=20000,
                                rng=np.random.default_rng(2))
    assert ours == pytest.approx((res.confidence_interval.low, res.confidence_interval.high), abs=0.006)


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.03, 0.2 -> 4 x 0.01, 3 x 0.02, max(0.06, 2 x 0.03), max(0.06, 1 x 0.2)
    assert holm([0.03, 0.01, 0.2, 0.02]) == pytest.approx([0.06, 0.04, 0.2, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_identical_runs_are_not_significant_and_a_clearly_better_one_is():
    rng = np.random.default_rng(5)
    ap = rng.random(500)
    assert paired_permutation_test(ap, ap.copy()) == 1.0
    better = np.clip(ap + 0.05 + rng.normal(0, 0.02, 500), 0, 1)
    assert paired_permutation_test(better, ap, n_resamples=2000) < 0.001
    low, high = paired_bootstrap_interval(better, ap)
    assert 0.04 < low < high < 0.06
    assert cohens_dz(better, ap) > 1 and math.isnan(cohens_dz(ap, ap))
