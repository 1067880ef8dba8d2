"""Statistics every layer may need: the unbiased pass@k estimator and the percentile bootstrap over problems.

They live in `core`, below everything, because they are statistics, not jobs: the sweeps' aggregation
(`inference.ttc.estimators`, `inference.ttc.aggregate`) and the toy family's evaluator (`inference.toy.evaluate`)
compute the same pass@k with it; the metrics' CIs (`inference.ttc.aggregate`), the GRPO before/after change
(`rl.report`) and the deficit's gap tests (`inference.deficit.gaps`) draw the same bootstrap resamples with
`bootstrap_weights`, so "paired" means the same thing everywhere: one draw of problems, applied to
every quantity compared.
"""

from __future__ import annotations

import functools
import math

import numpy as np


def subset_ratio(n: int, k: int) -> np.ndarray:
    """r[x] = C(x, k) / C(n, k) for x = 0..n, via prod_{i=x+1..n} (i-k)/i: factors in [0, 1], no overflow."""
    i = np.arange(n, 0, -1, dtype=float)
    factors = (i - k) / i  # the factor at i == k is 0, which zeroes every x < k as it should
    ratio = np.ones(n + 1)
    ratio[:n] = np.cumprod(factors)[::-1]
    return np.clip(ratio, 0.0, 1.0)


def pass_at_k(num_samples: int, num_correct: np.ndarray, ks) -> np.ndarray:
    """Unbiased pass@k for problems with the same n: array (problems, len(ks)). Chen et al. 2021, eq. 1.

    >>> pass_at_k(8, [0, 2, 8], [1, 8]).tolist()
    [[0.0, 0.0], [0.25, 1.0], [1.0, 1.0]]
    """
    num_correct = np.asarray(num_correct, dtype=np.int64)
    return np.stack([1.0 - subset_ratio(num_samples, k)[num_samples - num_correct] for k in ks], axis=1)


@functools.lru_cache(maxsize=8)
def bootstrap_weights(num_problems: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, problems) multiplicities of a percentile bootstrap over problems (Efron 1979).

    Every statistic computed from the same weights sees the same resampled problems: apply one
    matrix to two models' per-problem values and the bootstrap is paired. Drawn once per arguments
    (every strategy of a model asks for the same ones) and read-only."""
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(num_problems, np.full(num_problems, 1.0 / num_problems), size=resamples)
    weights.flags.writeable = False
    return weights


def bootstrap_ci(per_problem: np.ndarray, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over problems (axis 0) and its percentile-bootstrap interval, per column.

    For a paired comparison pass the per-problem differences (same problems, same seeds)."""
    per_problem = np.asarray(per_problem, dtype=float).reshape(len(per_problem), -1)
    mean = per_problem.mean(0)
    if resamples <= 0:
        return mean, np.full_like(mean, math.nan), np.full_like(mean, math.nan)
    means = bootstrap_weights(len(per_problem), resamples, seed) @ per_problem / len(per_problem)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return mean, low, high


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean of a few values (e.g. one per training seed),
    for spread that a bootstrap over problems does not see; NaN bounds with fewer than two values."""
    from scipy import stats

    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
