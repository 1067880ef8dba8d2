"""The exact majority@k dynamic program (`majority_exact`) and its cost (`majority_dp_costs`), which
`inference.ttc.estimators.majority_at_k` weighs against Monte Carlo for each k.

Majority DP: condition on the winning count j. Clusters smaller than j can only lose, so they
merge with the no-answer group into one binomial factor C(n_small, .). Each cluster with at least j
samples contributes sum_{x<j} C(s,x) z^x (below j) + C(s,j) z^j w (tied at j); a second array carries
the correctness-weighted sum. The coefficient of z^d w^t, divided by t, times C(n_small, k-d), summed,
over C(n,k), is the answer. Counts are float64 (exact Pascal rows), safe up to n = 1,024. The j are
independent: blocks of them run at once, one batched matrix product per cluster (`majority_exact`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MAX_EXACT_DP_N = 1024  # C(n, k) stays below float64's 1.8e308 up to n ~ 1,029
DP_BATCH_WIDTH = 160  # the majority DP runs many winning counts j at once while rows are at most this wide,
DP_BLOCK_ENTRIES = 1 << 21  # in blocks whose (j, 2 x width, width) convolution matrices hold at most this many


@lru_cache(maxsize=4)
def pascal(n_max: int) -> np.ndarray:
    """C(a, b) for 0 <= a, b <= n_max as float64 (zero when b > a), built row by row (exact to ~1e-13)."""
    table = np.zeros((n_max + 1, n_max + 2))
    table[0, 0] = 1.0
    for a in range(1, n_max + 1):
        table[a, 1:] = table[a - 1, 1:] + table[a - 1, :-1]
        table[a, 0] = 1.0
    return table[:, : n_max + 1]


def majority_dp_cost(sizes: np.ndarray, k_max: int) -> tuple[int, float]:
    """(numpy calls, multiply-adds) the exact majority DP needs: the choice exact vs Monte Carlo."""
    sizes = np.sort(sizes)[::-1]
    j = np.arange(1, min(int(sizes.max(initial=0)), k_max) + 1, dtype=float)
    big = (sizes[None, :] >= j[:, None]).sum(1).astype(float)
    width = np.minimum(k_max, big * j) + 1
    calls = np.sum(np.maximum(big - 1, 0) * np.minimum(j, big / 2 + 1) * 2 + 6)
    flops = np.sum(np.maximum(big - 1, 0) * (big / 2 + 1) * width * j * 2)
    return int(calls), float(flops)


def majority_dp_costs(sizes: np.ndarray, ks) -> tuple[np.ndarray, np.ndarray]:
    """`majority_dp_cost` for every k at once (the same sums of integers, exact in float64)."""
    sizes = np.sort(sizes)[::-1]
    ks = np.asarray(ks, dtype=float)
    j = np.arange(1, int(sizes.max(initial=0)) + 1, dtype=float)
    big = (sizes[None, :] >= j[:, None]).sum(1).astype(float)
    inside = j[None, :] <= ks[:, None]  # (ks, j): the DP runs j = 1..min(max size, k)
    width = np.minimum(ks[:, None], big[None, :] * j[None, :]) + 1
    calls = np.where(inside, np.maximum(big - 1, 0) * np.minimum(j, big / 2 + 1) * 2 + 6, 0).sum(1)
    flops = np.where(inside, np.maximum(big - 1, 0) * (big / 2 + 1) * width * j * 2, 0).sum(1)
    return calls.astype(np.int64), flops


def majority_exact(sizes: np.ndarray, values: np.ndarray, num_null: int, ks) -> np.ndarray:
    """Exact majority@k by the dynamic program in the module docstring. sizes/values: per cluster.

    The winning counts j are independent. Where the rows are narrow (every k the majority estimator
    affords is) a block of them runs at once: one (j, rows, columns) array per quantity, and each big
    cluster enters every j of the block through one batched product with its convolution matrix (its
    below-j kernel as a Toeplitz matrix, its tie at j as a shift by j); a cluster smaller than some j
    of the block enters those j as the identity (it is in n_small there). Wide rows go one j at a time
    with direct sums, where a Toeplitz matrix would cost width / j times more."""
    sizes, values = np.asarray(sizes), np.asarray(values, dtype=float)
    order = np.argsort(-sizes, kind="stable")
    sizes, values = sizes[order], values[order]
    n = int(sizes.sum()) + num_null
    if n > MAX_EXACT_DP_N:
        raise ValueError(f"exact majority DP limited to n <= {MAX_EXACT_DP_N}")
    comb = pascal(max(n, 1))
    ks = np.asarray(ks)
    k_max = int(ks.max())
    total = np.zeros(len(ks))
    j_top = min(int(sizes.max(initial=0)), k_max)
    j = 1
    while j <= j_top:
        num_big = int(np.sum(sizes >= j))
        width = min(k_max, num_big * j) + 1
        if width > DP_BATCH_WIDTH:
            total += _majority_one_j(sizes[:num_big], values[:num_big], n, comb, ks, j, width)
            j += 1
            continue
        # as many j as keep the block's widest (j, 2 x width, width) matrix within DP_BLOCK_ENTRIES
        j_end = j
        while j_end < j_top and min(k_max, num_big * (j_end + 1)) + 1 <= DP_BATCH_WIDTH and \
                (j_end + 1 - j + 1) * 2 * (min(k_max, num_big * (j_end + 1)) + 1) ** 2 <= DP_BLOCK_ENTRIES:
            j_end += 1
        total += _majority_block(sizes[:num_big], values[:num_big], n, comb, ks, np.arange(j, j_end + 1),
                                 min(k_max, num_big * j_end) + 1)
        j = j_end + 1
    return total / comb[n, ks]


def _majority_one_j(sizes: np.ndarray, values: np.ndarray, n: int, comb: np.ndarray, ks: np.ndarray, j: int,
                    width: int) -> np.ndarray:
    """The DP's terms for one winning count j (before the division by C(n, k)); sizes: the clusters >= j."""
    b = len(sizes)
    n_small = n - int(sizes.sum())
    # rows: number of clusters tied at j; columns: items drawn from the big clusters
    counts = np.zeros((b + 1, width))
    weighted = np.zeros((b + 1, width))
    counts[0, : min(j, width)] = comb[sizes[0], : min(j, width)]  # first cluster: no convolution
    if j < width:
        counts[1, j] = comb[sizes[0], j]
        weighted[1, j] = values[0] * comb[sizes[0], j]
    for index in range(1, b):
        s, v = sizes[index], values[index]
        first_row = 0 if index < b - 1 else 1  # the last cluster only feeds rows with a tie
        rows = slice(first_row, index + 2)
        below, at_j = comb[s, :j], comb[s, j]
        new_counts = np.zeros_like(counts)
        new_weighted = np.zeros_like(weighted)
        new_counts[rows] = _convolve_rows(counts[rows], below, width)
        new_weighted[rows] = _convolve_rows(weighted[rows], below, width)
        if j < width:
            lower = slice(max(first_row, 1) - 1, index + 1)
            upper = slice(max(first_row, 1), index + 2)
            new_counts[upper, j:] += at_j * counts[lower, : width - j]
            new_weighted[upper, j:] += at_j * (weighted[lower, : width - j] + v * counts[lower, : width - j])
        counts, weighted = new_counts, new_weighted
    per_degree = (weighted[1:] / np.arange(1, b + 1)[:, None]).sum(0)  # a tie pays 1/t per cluster
    rest = ks[:, None] - np.arange(width)[None, :]
    ways_small = np.where((rest >= 0) & (rest <= n_small), comb[n_small, np.clip(rest, 0, n_small)], 0.0)
    return ways_small @ per_degree


def _convolve_rows(rows: np.ndarray, kernel: np.ndarray, width: int) -> np.ndarray:
    """Each row convolved with kernel, truncated to `width` columns; direct sums (exact in float64)."""
    if len(kernel) > rows.shape[0]:
        return np.stack([np.convolve(row, kernel)[:width] for row in rows])
    out = np.zeros((rows.shape[0], width))
    for x, c in enumerate(kernel[:width]):
        if c:
            out[:, x:] += c * rows[:, : width - x]
    return out


def _majority_block(sizes: np.ndarray, values: np.ndarray, n: int, comb: np.ndarray, ks: np.ndarray,
                    js: np.ndarray, width: int) -> np.ndarray:
    """sum over j in js of the DP's terms (before the division by C(n, k)); sizes: the clusters >= js[0]."""
    num_j, num_big = len(js), len(sizes)
    column = np.arange(width)
    below = column[None, :] < js[:, None]  # (j, width): the kernel's terms x < j
    lag = column[None, :] - column[:, None]  # Toeplitz lag d - d'
    inside = lag >= 0
    lag_index = np.where(inside, lag, 0)
    shift = lag[None, :, :] == js[:, None, None]  # (j, d', d): the tie term moves d' to d' + j
    # rows: clusters tied at j (0..num_big); the first cluster needs no convolution
    counts = np.zeros((num_j, num_big + 1, width))
    weighted = np.zeros((num_j, num_big + 1, width))
    counts[:, 0] = np.where(below, comb[sizes[0], :width], 0.0)
    tie = js < width
    counts[tie, 1, js[tie]] = comb[sizes[0], js[tie]]
    weighted[tie, 1, js[tie]] = values[0] * comb[sizes[0], js[tie]]
    for index in range(1, num_big):
        s, v = sizes[index], values[index]
        big = js <= s  # j where this cluster is big; elsewhere it passes the rows through unchanged
        kernel = np.where(below & big[:, None], comb[s, :width], 0.0)
        kernel[~big, 0] = 1.0
        matrix = np.empty((num_j, 2 * width, width))
        matrix[:, :width] = np.where(inside, kernel[:, lag_index], 0.0)
        matrix[:, width:] = np.where(shift, np.where(big, comb[s, js], 0.0)[:, None, None], 0.0)
        rows = index + 2  # rows 0..index+1 can be non-zero after this cluster
        stacked = np.zeros((num_j, 2 * rows, 2 * width))
        stacked[:, :rows, :width] = counts[:, :rows]
        stacked[:, rows:, :width] = weighted[:, :rows]
        stacked[:, 1:rows, width:] = counts[:, : rows - 1]
        stacked[:, rows + 1:, width:] = weighted[:, : rows - 1] + v * counts[:, : rows - 1]
        product = stacked @ matrix
        counts[:, :rows], weighted[:, :rows] = product[:, :rows], product[:, rows:]
    per_degree = (weighted[:, 1:] / np.arange(1, num_big + 1)[None, :, None]).sum(1)  # (j, d): a tie pays 1/t
    n_small = n - (sizes[None, :] * (sizes[None, :] >= js[:, None])).sum(1)  # (j,)
    rest = ks[None, :, None] - column[None, None, :]  # (1, k, d)
    fits = (rest >= 0) & (rest <= n_small[:, None, None])
    ways_small = np.where(fits, comb[n_small[:, None, None], np.clip(rest, 0, n_small[:, None, None])], 0.0)
    return np.einsum("jkd,jd->k", ways_small, per_degree)
