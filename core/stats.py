"""Statistics every layer may need: the unbiased pass@k estimator.

It lives in `core`, below everything, because it is a statistic, not a job: the sweeps' aggregation
(`inference.estimators`, `inference.aggregate`) and the toy family's evaluator (`inference.toy_eval`)
compute the same pass@k with it.
"""

from __future__ import annotations

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
