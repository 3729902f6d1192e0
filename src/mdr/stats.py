"""Statistics for comparing training strategies: intervals over seeds, and one test of a difference
that counts both sources of noise, the seed and the question.

In:  per-seed metric values of a group of runs (``seed_interval``); or, for two groups A and B, the
     per-query values of every seed of each on the same rows (``a`` [S_A, N], ``b`` [S_B, N]), with
     the per-row weights that make the weighted mean the reported metric, each row's cell (its query
     and pool language, for a macro average) and its question (the translations of one question,
     and one query against several pools, are one question) (``seeds_and_questions``).
Out: mean, standard deviation and a Student-t interval over seeds; the difference of the metric
     between the groups with its interval and two-sided p-value; Holm-adjusted p-values.

The test (``seeds_and_questions``). The question a researcher asks is "is strategy A better than
strategy B", over the seeds the strategies could be trained with and the questions they could be
asked, not "are these six trained models different on these questions". The difference D of the
two groups' mean metrics varies with both, so its variance V has two parts:

- seeds: s_g^2 / S_g, the variance of group g's metric over its S_g seeds, divided by S_g. A seed
  shifts a whole model (or one language of it) and also changes each query's score; both are in s_g^2.
- questions: the lasting per-question differences between the strategies, which another sample of
  questions would change. The questions are the resampling unit, all their rows together (the
  translations of a question, one query against several pools). V_q, the cluster-robust
  (linearised) variance of D over questions, is C / (C - 1) * the sum over the C questions of the
  squared influence of each (the sum of its rows' weighted differences from their cell means). V_q
  also holds the per-query noise of the seeds, R_A / S_A + R_B / S_B, which s_g^2 already holds; R_g
  is estimated the same way from the seeds' deviations from the group's per-row mean, and subtracted:
  the question part is max(0, V_q - R_A / S_A - R_B / S_B).

The statistic D / sqrt(V) is referred to Student's t with Welch-Satterthwaite degrees of freedom
(S_g - 1 for each seed part, C - 1 for the question part), which gives the p-value and the interval
D +- t * sqrt(V) (so the two always agree). With no
question variation it is Welch's t-test over seeds (``scipy.stats.ttest_ind(equal_var=False)``); with
no seed variation the cluster-robust paired t-test over questions (one row per question:
``scipy.stats.ttest_rel``); tests/test_stats.py checks both, and that the false-positive rate stays
at or below its nominal level under seed shifts and correlated translations, where a test over
queries alone reaches 20-50 %. With three seeds per group the seed part has few degrees of freedom,
so without lasting per-question differences the test is conservative (3-4 % false positives at a
nominal 5 %; benchmarks/calibration.py and docs/comparisons.md give the rates and the power).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float
    sd: float  # sample standard deviation (NaN for one seed)
    low: float  # 95 % interval for the mean over seeds (Student t; NaN for one seed)
    high: float

    def text(self, digits: int, sd: bool = False) -> str:
        """``mean [low, high]`` (``mean ±sd [low, high]`` with ``sd``) with ``digits`` decimals; the
        mean alone for one seed."""
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f}" + (f" ±{self.sd:.{digits}f}" if sd else "") + f" [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def seed_interval(values, confidence: float = 0.95, bounds: tuple[float | None, float | None] = (None, None)) -> SeedSummary:
    """Mean, sd and the t interval of the mean of per-seed values, cut to ``bounds`` (the metric's
    range, ``Metric.bounds``): the mean of values inside the range is inside it, so the cut loses no
    coverage, and a rate near 1 over three seeds never prints an interval that passes 1."""
    x = np.asarray(values, dtype=np.float64)
    n, mean = len(x), float(np.mean(x))
    if n < 2:
        return SeedSummary(n, mean, math.nan, math.nan, math.nan)
    sd = float(np.std(x, ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    return SeedSummary(n, mean, sd, low if bounds[0] is None else max(low, bounds[0]),
                       high if bounds[1] is None else min(high, bounds[1]))


@dataclass(frozen=True)
class Difference:
    """A - B of a metric, with its interval and test (see the module docstring)."""

    delta: float
    low: float
    high: float
    p: float
    df: float  # Welch-Satterthwaite degrees of freedom
    se_questions: float  # sqrt(V_q)
    se_seeds: float  # sqrt(seed part of A + seed part of B)
    questions: int
    seeds: tuple[int, int]

    @property
    def se(self) -> float:
        return math.hypot(self.se_questions, self.se_seeds)


def _centred_influence(x: np.ndarray, weights: np.ndarray, cells: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """Per question: the sum over its rows of weight * (value - the row's cell mean); ``x`` [..., N]."""
    cell_w = np.bincount(cells, weights)
    x = np.atleast_2d(x)
    out = np.empty((len(x), n_clusters))
    for k, row in enumerate(x):
        cell_mean = np.bincount(cells, weights * row) / np.where(cell_w > 0, cell_w, 1)
        out[k] = np.bincount(clusters, weights * (row - cell_mean[cells]), minlength=n_clusters)
    return out


def seeds_and_questions(a, b, weights=None, cells=None, clusters=None, confidence: float = 0.95) -> Difference:
    """The difference of the weighted mean metric of A's and B's seeds, tested over seeds and questions.

    ``a`` [S_A, N], ``b`` [S_B, N]: per seed, the per-row values on the same N rows (S_A, S_B >= 2);
    ``weights`` [N]: per-row weights (normalised here; default equal); ``cells`` [N]: integer cell of
    each row (macro averages: its query / pool language cell; default one cell); ``clusters`` [N]:
    integer question of each row (default: every row its own question).
    """
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the groups have {a.shape[1]} and {b.shape[1]} rows: pair them first")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each group needs at least two seeds to estimate the seed variance, got {len(a)} and {len(b)}")
    n = a.shape[1]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    cells = np.zeros(n, dtype=np.int64) if cells is None else np.unique(cells, return_inverse=True)[1]
    clusters = np.arange(n) if clusters is None else np.unique(clusters, return_inverse=True)[1]
    n_clusters = int(clusters.max()) + 1
    if n_clusters < 2:
        raise ValueError("the test needs at least two questions")
    scale = n_clusters / (n_clusters - 1)

    d = a.mean(0) - b.mean(0)
    delta = float(w @ d)
    v_questions = scale * float(np.sum(_centred_influence(d, w, cells, clusters, n_clusters) ** 2))
    seeds_part, residual_part, spread = 0.0, 0.0, 0.0  # spread: the Satterthwaite denominator
    for y in (a, b):
        s = len(y)
        between = float(np.var(y @ w, ddof=1)) / s  # the variance of the group's mean metric, from its seeds
        residual = scale * float(np.sum(_centred_influence(y - y.mean(0), w, cells, clusters, n_clusters) ** 2)) / (s - 1) / s
        seeds_part += between
        residual_part += residual
        spread += between**2 / (s - 1)
    # what V_q holds beyond the per-query noise of the seeds (which the seed part already holds): the
    # strategies' lasting per-question differences, which another sample of questions would change;
    # a mean square over questions (C - 1 degrees of freedom)
    questions_part = max(0.0, v_questions - residual_part)
    spread += questions_part**2 / (n_clusters - 1)
    variance = seeds_part + questions_part
    if variance <= 0 or not math.isfinite(variance):
        p = 1.0 if delta == 0 else 0.0  # no variation anywhere: the difference is what it is
        return Difference(delta, delta, delta, p, math.inf, 0.0, 0.0, n_clusters, (len(a), len(b)))
    df = variance**2 / spread
    se = math.sqrt(variance)
    p = float(2 * scipy_stats.t.sf(abs(delta) / se, df))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Difference(delta, delta - half, delta + half, p, float(df), math.sqrt(questions_part), math.sqrt(seeds_part),
                      n_clusters, (len(a), len(b)))


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control), in the input order."""
    p = list(p_values)
    return multipletests(p, method="holm")[1].tolist() if p else []
