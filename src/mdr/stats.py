"""Statistics for comparing runs: intervals over seeds, paired tests over queries, Holm's correction.

In:  per-seed metric values of a group of runs; or the per-query scores of two runs on the same
     queries (``a``, ``b``), with per-query weights that make the weighted mean difference equal to
     the difference of the reported metric (see ``mdr.comparison``).
Out: mean, standard deviation and a Student-t interval over seeds; a paired randomisation
     (sign-flip) test p-value and a paired bootstrap percentile interval for the weighted mean
     difference; Holm-adjusted p-values; the standardised effect size d_z.

The randomisation test and the bootstrap follow scipy's ``permutation_test`` (paired "samples")
and ``bootstrap`` (paired, percentile) definitions, computed here in chunks with weights so that
hundreds of thousands of queries fit in memory; tests/test_stats.py checks them against scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float
    sd: float  # sample standard deviation (NaN for one seed)
    low: float  # 95 % interval for the mean over seeds (Student t; NaN for one seed)
    high: float


def seed_interval(values, confidence: float = 0.95) -> SeedSummary:
    """Mean, sd and the t interval of the mean of per-seed values."""
    x = np.asarray(values, dtype=np.float64)
    n, mean = len(x), float(np.mean(x))
    if n < 2:
        return SeedSummary(n, mean, math.nan, math.nan, math.nan)
    sd = float(np.std(x, ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return SeedSummary(n, mean, sd, mean - half, mean + half)


def _weights(w, n: int) -> np.ndarray:
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    return w / w.sum()


def paired_permutation_test(a, b, weights=None, n_resamples: int = 9999, seed: int = 0, chunk: int = 256) -> float:
    """Two-sided p-value of the weighted mean difference sum(w * (a - b)) under random swaps of each
    pair (sign flips of the differences): exact over all 2**n flips when that is at most
    ``n_resamples``, otherwise ``n_resamples`` random ones (p = (count + 1) / (n_resamples + 1))."""
    wd = _weights(weights, len(a)) * (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    n, observed = len(wd), float(wd.sum())
    if not np.any(wd):
        return 1.0
    gamma = abs(observed) * np.finfo(np.float64).eps * 100  # scipy's tolerance for ties
    exact = n < 63 and 2**n <= n_resamples
    total, less, greater = 0, 0, 0
    rng = np.random.default_rng(seed)
    while total < (2**n if exact else n_resamples):
        size = min(chunk, (2**n if exact else n_resamples) - total)
        if exact:
            codes = np.arange(total, total + size)[:, None] >> np.arange(n)[None, :] & 1
            signs = 1.0 - 2.0 * codes
        else:
            signs = rng.choice([-1.0, 1.0], size=(size, n))
        null = signs @ wd
        less += int(np.sum(null <= observed + gamma))
        greater += int(np.sum(null >= observed - gamma))
        total += size
    adjust = 0 if exact else 1
    p_less, p_greater = (less + adjust) / (total + adjust), (greater + adjust) / (total + adjust)
    return float(min(1.0, 2 * min(p_less, p_greater)))


def paired_bootstrap_interval(a, b, weights=None, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                              chunk: int = 128) -> tuple[float, float]:
    """Percentile interval of the weighted mean difference, resampling pairs (with their weights)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    w = _weights(weights, len(d))
    rng = np.random.default_rng(seed)
    estimates = []
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, len(d), size=(min(chunk, n_resamples - start), len(d)))
        estimates.append((w[idx] * d[idx]).sum(1) / w[idx].sum(1))
    estimates = np.concatenate(estimates)
    alpha = (1 - confidence) / 2
    return float(np.percentile(estimates, 100 * alpha)), float(np.percentile(estimates, 100 * (1 - alpha)))


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control, in the input order)."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out.tolist()


def cohens_dz(a, b) -> float:
    """Mean of the paired differences over their standard deviation (NaN when they do not vary)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
    return float(np.mean(d) / sd) if sd > 0 else math.nan
