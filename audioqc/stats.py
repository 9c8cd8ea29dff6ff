"""The statistics behind trends and comparisons (scipy.stats and numpy).

- :func:`shift_test`: Mann-Whitney U between the latest run's files and the baseline runs'
  files, one-sided in the bad direction (two-sided where either direction is bad), with the
  effect size as Cliff's delta (``P(current > baseline) - P(current < baseline)``, from U).
- :func:`holm`: Holm's step-down adjustment across the metrics of one group, so that the
  chance of any false alert in a group stays at most alpha.
- :func:`bootstrap_median_ci`: the percentile bootstrap interval of a median, drawn exactly
  and without resampling the data: the median of a bootstrap resample of n sorted values is the
  value at index ``floor(n U)``, where U is the k-th order statistic of n uniforms, which is
  Beta(k, n + 1 - k) distributed; for even n the next order statistic is U + (1 - U) M with
  M ~ Beta(1, n - k). So 10,000 draws cost 10,000 Beta variates whatever n is (the brute-force
  bootstrap on 10,000 paired files would sort 10,000 x 10,000 values per metric). Tested
  against the bootstrap distribution enumerated over every resample of small samples.
- :func:`wilcoxon_p`: the Wilcoxon signed-rank p-value of paired deltas.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShiftTest:
    """Mann-Whitney U of current against baseline values.

    ``p_value`` is one-sided towards ``alternative`` (``less``: current lower, ``greater``) or
    two-sided; ``effect`` is Cliff's delta in [-1, 1] (positive: current tends to be higher).
    """

    p_value: float
    u: float
    effect: float
    alternative: str


def shift_test(current: np.ndarray, baseline: np.ndarray, alternative: str) -> ShiftTest:
    """Mann-Whitney U (asymptotic, tie-corrected, with continuity correction).

    ``alternative``: ``"less"`` (is current stochastically lower?), ``"greater"`` or
    ``"two-sided"``. All values equal on both sides gives p = 1.
    """
    from scipy.stats import mannwhitneyu

    x = np.asarray(current, dtype=float)
    y = np.asarray(baseline, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ValueError("shift_test needs values on both sides")
    if np.all(x == x[0]) and np.all(y == x[0]):
        return ShiftTest(1.0, x.size * y.size / 2.0, 0.0, alternative)
    res = mannwhitneyu(x, y, alternative=alternative, method="asymptotic", use_continuity=True)
    u = float(res.statistic)
    effect = 2.0 * u / (x.size * y.size) - 1.0
    p = float(res.pvalue)
    return ShiftTest(1.0 if math.isnan(p) else min(1.0, p), u, effect, alternative)


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (reject H_i when adjusted p_i <= alpha)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def bootstrap_median_draws(values: np.ndarray, draws: int = 10_000, seed: int = 0) -> np.ndarray:
    """``draws`` medians of bootstrap resamples of ``values`` (exact, see the module docstring)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0:
        raise ValueError("no values")
    rng = np.random.default_rng(seed)
    if n == 1:
        return np.full(draws, x[0])
    if n % 2:
        k = (n + 1) // 2
        u = rng.beta(k, n + 1 - k, size=draws)
        return x[np.minimum((n * u).astype(np.int64), n - 1)]
    k = n // 2
    u = rng.beta(k, n + 1 - k, size=draws)
    v = u + (1.0 - u) * rng.beta(1, n - k, size=draws)
    lo = x[np.minimum((n * u).astype(np.int64), n - 1)]
    hi = x[np.minimum((n * v).astype(np.int64), n - 1)]
    return (lo + hi) / 2.0


def bootstrap_median_ci(values: np.ndarray, level: float = 0.95, draws: int = 10_000,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the median (two-sided, ``level``)."""
    medians = bootstrap_median_draws(values, draws, seed)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(medians, [tail, 1.0 - tail])
    return float(lo), float(hi)


def wilcoxon_p(deltas: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired deltas (zeros dropped, as Wilcoxon
    defined it); 1.0 when every delta is zero."""
    from scipy.stats import wilcoxon

    d = np.asarray(deltas, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample notes
        p = float(wilcoxon(d, zero_method="wilcox").pvalue)
    return 1.0 if math.isnan(p) else p


def binomial_upper(n: int, p: float, tail: float) -> int:
    """The smallest k with ``P(X >= k) <= tail`` for X ~ Binomial(n, p): a count of false alarms
    at or above it has probability at most ``tail`` at false-alarm rate ``p``."""
    from scipy.stats import binom

    for k in range(n + 2):
        if binom.sf(k - 1, n, p) <= tail:
            return k
    return n + 1
