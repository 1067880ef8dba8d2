"""Per-problem test-time-compute estimators: pass@k, majority@k, best_of_n@k, weighted_majority@k.

Every estimator answers the same question: from the N samples stored for one problem, what is the
expected accuracy of the strategy on a uniformly random k-subset drawn *without* replacement?
Everyone else (lm-eval, lighteval, search-and-learn, the study's Large-Language-Monkeys fork)
scores the first k samples of one draw, a high-variance estimate; verl resamples with
replacement, which duplicates votes. Here, for every k <= N:

- pass@k: unbiased 1 - C(n-c,k)/C(n,k) (Chen et al. 2021, eq. 1), as a product of factors in
  [0, 1] so it never overflows.
- best_of_n@k: closed form. The winner lies in score level v iff the subset holds no answered
  sample scoring above v and at least one at v: C(n-a,k) - C(n-a-t,k) subsets; by symmetry the
  uniform tie-break then picks each of the t tied samples equally often.
- majority@k: exact dynamic program over cluster counts (`inference.ttc.majority_dp`) for every k whose cost fits a
  small budget, else exact enumeration when C(n, k) is small, else Monte Carlo. Always exact for
  n <= 16.
- weighted_majority@k: exact enumeration of all k-subsets when there are few (always for
  n <= 16), else Monte Carlo. Summed scores within TIE_TOLERANCE (relative) count as a tie.
The output labels each value "exact" or "monte_carlo".

Conventions shared by every strategy: a sample with no answer (cluster -1) never votes and is
never chosen; a subset with no answer scores 0; ties are broken uniformly at random, so a tie
contributes the fraction of tied clusters that are correct. A cluster's correctness is the mean of
`correct` over its samples (0 or 1 whenever the checker is consistent).

Monte Carlo (where exact is intractable): >= 2,000 uniform k-subsets per k. Small k (k^2 <= n):
the subsets' indices are drawn directly. Larger k: the cluster counts are drawn from the
multivariate hypergeometric law a uniform k-subset induces; for the weighted vote each cluster's
score sum lies between the sums of its x smallest and x largest scores, so only clusters still in
contention get an actual random within-cluster subset: the prefix of one of a pool of random
permutations of the cluster, drawn once per problem (>= PERMUTATION_POOL of them, one per draw
when the cluster is small; built from a + b shuffles composed pairwise, which keeps any two of them
independent, `_permutation_prefix_sums`). Each draw is a uniform k-subset, so the estimate is
unbiased; for big clusters several draws share a permutation, which adds a little variance
(measured: standard deviation x1.4 at 2,000 draws), immaterial once averaged over problems.
Small k's draws are nested (one ordered draw, its first k columns per k). Majority and weighted
majority of one problem vote on the same draws.

`prefix` mode reproduces the study: the first k samples in sample order; ties go to the cluster
(or sample) seen first.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from core.stats import pass_at_k, subset_ratio  # noqa: F401 - re-exported: the estimators' API
from inference.ttc.majority_dp import (  # noqa: F401 - majority_dp_cost, pascal re-exported with the API
    MAX_EXACT_DP_N,
    majority_dp_cost,
    majority_dp_costs,
    majority_exact,
    pascal,
)

# every strategy, in report order, with its name in plots and reports (best_of_n ranks by whichever score
# column the aggregation was given, so its label names no score)
STRATEGY_LABELS = {"pass": "pass@k", "majority": "majority@k", "best_of_n": "best-of-n@k",
                   "weighted_majority": "weighted majority@k"}
STRATEGIES = tuple(STRATEGY_LABELS)
ENUMERATION_LIMIT = 20_000  # >= C(16, 8): every k-subset of n <= 16 samples is enumerated
DP_MAX_CALLS = 600  # numpy calls and multiply-adds allowed for one problem's majority DP;
DP_MAX_FLOPS = 5e6  # beyond them Monte Carlo is cheaper and, over many problems, as precise
PERMUTATION_POOL = 256  # at least this many within-cluster permutations per problem and cluster,
PERMUTATION_BUDGET = 65_536  # or as many as fit this many entries (independent draws for small clusters)
TIE_TOLERANCE = 1e-9  # summed scores closer than this (relative) are a tie


@dataclass
class ProblemSamples:
    """One problem's N samples, in sample order. cluster: int (-1 = no answer), 0..m-1 otherwise."""

    cluster: np.ndarray
    correct: np.ndarray
    score: np.ndarray | None = None

    @classmethod
    def from_answers(cls, answers: list, correct, score=None) -> "ProblemSamples":
        """Answers (hashable or None) -> dense cluster ids in order of first appearance."""
        ids: dict = {}
        cluster = np.array([-1 if a is None else ids.setdefault(a, len(ids)) for a in answers], dtype=np.int64)
        return cls(cluster, np.asarray(correct, dtype=bool), None if score is None else np.asarray(score, float))

    @property
    def n(self) -> int:
        return len(self.cluster)

    @property
    def num_clusters(self) -> int:
        return int(self.cluster.max()) + 1 if self.n and self.cluster.max() >= 0 else 0

    def cluster_sizes(self) -> np.ndarray:
        return np.bincount(self.cluster[self.cluster >= 0], minlength=self.num_clusters)

    def cluster_value(self) -> np.ndarray:
        """Correctness of each cluster: mean of `correct` over its samples."""
        answered = self.cluster >= 0
        hits = np.bincount(self.cluster[answered], weights=self.correct[answered], minlength=self.num_clusters)
        return hits / np.maximum(self.cluster_sizes(), 1)


def best_of_n_at_k(samples: ProblemSamples, ks, score: np.ndarray | None = None) -> np.ndarray:
    """Expected correctness of the highest-scoring answered sample of a random k-subset (ties uniform)."""
    score = samples.score if score is None else score
    answered = samples.cluster >= 0
    s = np.where(np.isnan(score[answered]), -np.inf, score[answered])  # unscored answers rank last
    levels, inverse = np.unique(-s, return_inverse=True)  # level 0 = highest score
    tied = np.bincount(inverse, minlength=len(levels))
    tied_correct = np.bincount(inverse, weights=samples.correct[answered], minlength=len(levels))
    above = np.concatenate([[0], np.cumsum(tied)[:-1]])
    n = samples.n
    out = np.empty(len(ks))
    for i, k in enumerate(ks):
        r = _subset_ratio(n, int(k))
        out[i] = np.sum((r[n - above] - r[n - above - tied]) * tied_correct / tied)
    return out


@lru_cache(maxsize=256)
def _subset_ratio(n: int, k: int) -> np.ndarray:
    """`subset_ratio`, computed once per (n, k) for all problems (read-only)."""
    ratio = subset_ratio(n, k)
    ratio.flags.writeable = False
    return ratio


def _vote(counts: np.ndarray, values: np.ndarray, sums: np.ndarray | None = None) -> np.ndarray:
    """Per subset (columns): correctness of the winning cluster(s), ties uniform; 0 if nothing answered.
    counts/sums: (clusters, subsets), cluster-major so that every reduction runs over whole rows (numpy
    reduces a short inner axis ~30x slower). With sums, the largest summed score wins, else the largest count."""
    if sums is None:
        best = counts.max(0, initial=0)
        tie = (counts == best) & (best > 0)
    else:
        present = counts > 0
        key = np.where(present, sums, -np.inf)
        best = key.max(0, initial=-np.inf)
        tie = present & (key >= best - TIE_TOLERANCE * np.maximum(1.0, np.abs(best)))
    hits = 0.0  # clusters worth 0 add +0.0 to the sum over clusters: skipping them changes no bit
    for c in np.flatnonzero(values):
        hits = hits + tie[c] * values[c]
    return hits / np.maximum(tie.sum(0), 1)  # nothing answered: 0 / 1


@lru_cache(maxsize=32)
def _small_subsets(n: int) -> tuple[np.ndarray, np.ndarray]:
    """All 2^n subsets of n <= 16 items as a (2^n, n) 0/1 matrix, and each subset's size."""
    masks = np.arange(2 ** n, dtype=np.int64)
    members = ((masks[:, None] >> np.arange(n)) & 1).astype(float)
    return members, members.sum(1).astype(np.int64)


def _enumerate(samples: ProblemSamples, k: int, weight: np.ndarray | None) -> float:
    """Exact expectation by scoring every k-subset (only where C(n, k) <= ENUMERATION_LIMIT)."""
    m, n = samples.num_clusters, samples.n
    answered = samples.cluster >= 0
    if n <= 16:  # membership matrix times one-hot clusters: fast for every k at once
        members, size = _small_subsets(n)
        members = members[size == k]
        onehot = np.zeros((n, m))
        onehot[np.flatnonzero(answered), samples.cluster[answered]] = 1.0
        counts = (members @ onehot).T  # _vote takes (clusters, subsets)
        sums = None if weight is None else (members @ (onehot * weight[:, None])).T
        return float(_vote(counts, samples.cluster_value(), sums).mean())
    subsets = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), k)), dtype=np.int64,
                          count=math.comb(n, k) * k).reshape(-1, k)
    counts, sums = _subset_tallies(samples, subsets, weight)
    return float(_vote(counts, samples.cluster_value(), sums).mean())


def _draw(samples: ProblemSamples, k: int, draws: int, rng: np.random.Generator, cache: dict | None,
          width: int = 0):
    """`draws` uniform k-subsets, as ("subsets", indices) when k is small (k^2 <= n: indices drawn
    directly, cheap) or as ("counts", per-cluster counts, cluster-major) from the multivariate
    hypergeometric law a uniform k-subset induces. Cached so majority and weighted majority vote on
    the same draws. Small subsets are nested: one draw of `width` >= k ordered distinct indices per row
    serves every small k as its first k columns (a uniform ordered sample's prefix is a uniform k-subset)."""
    if cache is not None and ("draw", k, draws) in cache:
        return cache["draw", k, draws]
    if k * k <= samples.n:
        drawn = None if cache is None else cache.get(("ordered", draws))
        if drawn is None or drawn.shape[1] < k:
            drawn, _ = _random_indices(samples.n, np.full(draws, max(k, width)), rng)
            if cache is not None:
                cache["ordered", draws] = drawn
        result = ("subsets", drawn[:, :k])
    else:
        colors = np.append(samples.cluster_sizes(), np.sum(samples.cluster < 0))
        method = "count" if k <= 96 else "marginals"  # the faster of numpy's two exact samplers at this k
        counts = rng.multivariate_hypergeometric(colors, k, size=draws, method=method)
        result = ("counts", np.ascontiguousarray(counts[:, :-1].T))
    if cache is not None:
        cache["draw", k, draws] = result
    return result


def _nest_width(n: int, ks) -> int:
    """The widest small k (k^2 <= n) asked for: the width of the nested small-subset draw."""
    return max((int(k) for k in ks if k * k <= n), default=0)


def _subset_tallies(samples: ProblemSamples, index: np.ndarray, weight: np.ndarray | None):
    """Per subset (rows of `index`): votes per cluster and, with weights, summed weight per cluster, both
    (clusters, subsets). Each sum adds its subset's weights in column order, whatever the layout."""
    m, num = samples.num_clusters, len(index)
    bins = np.where(samples.cluster >= 0, samples.cluster, m)[index]  # no answer -> extra bin m
    flat = (bins * num + np.arange(num)[:, None]).ravel()
    counts = np.bincount(flat, minlength=(m + 1) * num).reshape(m + 1, num)[:m]
    if weight is None:
        return counts, None
    sums = np.bincount(flat, weights=weight[index].ravel(), minlength=(m + 1) * num)
    return counts, sums.reshape(m + 1, num)[:m]


def _weighted_sums(samples: ProblemSamples, counts: np.ndarray, weight: np.ndarray, rng: np.random.Generator,
                   cache: dict) -> np.ndarray:
    """Score sums of random within-cluster subsets of the drawn sizes (counts: clusters x draws), sampled
    only where needed.

    A cluster's sum lies between the sum of its x smallest and its x largest scores. A cluster whose
    upper bound is below another's lower bound loses whatever its subset, so it keeps its lower
    bound; so does a lone contender (it wins whatever its subset). Only contenders of undecided
    draws get an actual random subset, which leaves every vote, hence the estimate, unchanged."""
    m = samples.num_clusters
    members = cache.get("members")
    if members is None:
        members = cache["members"] = [np.sort(weight[samples.cluster == c]) for c in range(m)]
        width = max((len(w) for w in members), default=0) + 1
        low, high = np.zeros((m, width)), np.zeros((m, width))  # row c: sums of c's x smallest / largest
        for c, w in enumerate(members):
            np.cumsum(w, out=low[c, 1:len(w) + 1])
            np.cumsum(w[::-1], out=high[c, 1:len(w) + 1])
        cache["low"], cache["high"] = low, high
    present = counts > 0
    cluster = np.arange(m)[:, None]
    low, high = cache["low"][cluster, counts], cache["high"][cluster, counts]
    best_low = np.where(present, low, -np.inf).max(0, initial=-np.inf)
    margin = TIE_TOLERANCE * np.maximum(1.0, np.abs(np.where(np.isfinite(best_low), best_low, 0.0)))
    contender = present & (high >= best_low - margin)
    undecided = contender.sum(0) > 1
    sums = low
    for c, w in enumerate(members):
        if len(w) == 0 or w[0] == w[-1]:
            continue  # equal scores: the bound is the sum
        draws = np.flatnonzero(undecided & contender[c])
        if len(draws):
            sums[c, draws] = _random_subset_sums(w, counts[c, draws], rng, cache.setdefault(("pool", c), {}))
    return sums


def _random_subset_sums(values: np.ndarray, sizes: np.ndarray, rng: np.random.Generator, pool: dict) -> np.ndarray:
    """Sum of a uniform random subset of `values` of each given size (without replacement), one per row.

    Small subsets: indices drawn with replacement, rows holding a repeat redrawn (cost ~ size).
    Larger ones: the prefix of a random permutation from the problem's pool (module docstring):
    each subset is still uniform, and the cost no longer grows with draws x n. The pool's prefix
    sums are summed only as far as the largest size asked for so far."""
    s, x_max = len(values), int(sizes.max())
    if x_max * x_max > s:
        if "prefix" not in pool:
            rows = max(PERMUTATION_POOL, PERMUTATION_BUDGET // s)
            _permutation_pool(values, rows, rng, pool)
        prefix = _pool_prefix(pool, x_max)
        if len(prefix) >= len(sizes):  # enough permutations: one each, draws stay independent
            return prefix[rng.permutation(len(prefix))[: len(sizes)], sizes]
        return prefix[rng.integers(0, len(prefix), size=len(sizes)), sizes]
    index, used = _random_indices(s, sizes, rng)
    return (values[index] * used).sum(1)


def _permutation_prefix_sums(values: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """(>= rows, s + 1): prefix sums of `values` in random orders, row i*b + j ordered by P_i composed with
    Q_j for a + b independent uniform permutations (a*b >= rows). Each row is a uniform permutation, and
    any two rows are independent (for a fixed bijection P_i, the prefixes of Q_j and Q_j' are independent
    uniform subsets; likewise P_i, P_i' applied to one Q_j), so draws that use distinct rows are as
    independent as with a*b separate shuffles, for a + b shuffles and a gather."""
    pool: dict = {}
    _permutation_pool(values, rows, rng, pool)
    return _pool_prefix(pool, len(values))


def _permutation_pool(values: np.ndarray, rows: int, rng: np.random.Generator, pool: dict) -> None:
    """Draw the a + b permutations of `_permutation_prefix_sums` into `pool`; no prefix summed yet."""
    s = len(values)
    a = int(np.ceil(np.sqrt(rows)))
    b = -(-rows // a)
    first = rng.permuted(np.broadcast_to(np.arange(s), (a, s)), axis=1)
    pool["second"] = rng.permuted(np.broadcast_to(np.arange(s), (b, s)), axis=1)
    pool["ordered_first"] = values[first]  # (a, s): values in the order P_i
    pool["prefix"] = np.empty((a * b, s + 1))
    pool["prefix"][:, 0] = 0.0
    pool["done"] = 0  # prefix columns 0..done are summed


def _pool_prefix(pool: dict, x_max: int) -> np.ndarray:
    """The pool's prefix sums, summed at least up to column x_max (row (i, j), position t: values[P_i[Q_j[t]]]).
    Continuing the running sum from column `done` adds in the same order as one cumsum of the whole row."""
    prefix, done = pool["prefix"], pool["done"]
    if x_max > done:
        ordered = pool["ordered_first"][:, pool["second"][:, done:x_max]].reshape(len(prefix), x_max - done)
        np.cumsum(np.concatenate([prefix[:, done:done + 1], ordered], 1), 1, out=prefix[:, done:x_max + 1])
        pool["done"] = x_max
    return prefix


def _random_indices(s: int, sizes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row r: sizes[r] distinct indices in [0, s), uniformly (first sizes[r] columns; `used` marks them).
    Drawn with replacement, rows holding a repeat redrawn: cheap while sizes^2 is small next to s."""
    x_max = int(sizes.max())
    used = np.arange(x_max)[None, :] < sizes[:, None]
    index = rng.integers(0, s, size=(len(sizes), x_max))
    todo = np.arange(len(sizes))
    small = np.int16 if max(s, x_max) < 2 ** 15 else np.int64  # sorting 16-bit rows is twice as fast
    unused = (-1 - np.arange(x_max)).astype(small)  # unused slots never collide
    every = bool(sizes.min() == x_max)  # every slot used: nothing to mask
    while len(todo):
        marked = index[todo].astype(small) if every else np.where(used[todo], index[todo], unused).astype(small)
        marked.sort(axis=1)
        repeat = np.flatnonzero(marked[:, 1:] == marked[:, :-1]) // max(x_max - 1, 1)  # ascending rows
        first = np.ones(len(repeat), dtype=bool)
        first[1:] = repeat[1:] != repeat[:-1]
        todo = todo[repeat[first]]
        index[todo] = rng.integers(0, s, size=(len(todo), x_max))
    return index, used


def majority_at_k(samples: ProblemSamples, ks, *, draws: int = 2000, rng: np.random.Generator | None = None,
                  force_monte_carlo: bool = False, draw_cache: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """Majority@k for each k and the estimator used for it ("exact" or "monte_carlo").
    draw_cache: shared with weighted_majority_at_k on the same problem, so both vote on the same
    random subsets (half the sampling; each estimate stays unbiased)."""
    rng = rng or np.random.default_rng(0)
    sizes, values = samples.cluster_sizes(), samples.cluster_value()
    num_null = int(np.sum(samples.cluster < 0))
    ks = list(ks)
    out, kinds = np.full(len(ks), np.nan), [""] * len(ks)
    if not force_monte_carlo and samples.n <= MAX_EXACT_DP_N:  # the DP for every k it affords
        calls, flops = majority_dp_costs(sizes, ks)
        affordable = [i for i in range(len(ks)) if calls[i] <= DP_MAX_CALLS and flops[i] <= DP_MAX_FLOPS]
        if affordable:
            out[affordable] = majority_exact(sizes, values, num_null, [ks[i] for i in affordable])
            for i in affordable:
                kinds[i] = "exact"
    for i, k in enumerate(ks):
        if kinds[i]:
            continue
        if not force_monte_carlo and _num_subsets(samples.n, k) <= ENUMERATION_LIMIT:
            out[i], kinds[i] = _enumerate(samples, k, None), "exact"
        else:
            kind, drawn = _draw(samples, k, draws, rng, draw_cache, _nest_width(samples.n, ks))
            counts = _subset_tallies(samples, drawn, None)[0] if kind == "subsets" else drawn
            out[i], kinds[i] = _vote(counts, values).mean(), "monte_carlo"
    return out, kinds


def weighted_majority_at_k(samples: ProblemSamples, ks, weight: np.ndarray | None = None, *, draws: int = 2000,
                           rng: np.random.Generator | None = None,
                           force_monte_carlo: bool = False,
                           draw_cache: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """Weighted majority@k (cluster with the largest summed weight wins) and the estimator per k."""
    rng = rng or np.random.default_rng(0)
    weight = samples.score if weight is None else weight
    weight = np.where(np.isnan(weight), 0.0, weight)  # an unscored answer adds nothing to its cluster
    values = samples.cluster_value()
    out, kinds = np.empty(len(ks)), []
    for i, k in enumerate(ks):
        if not force_monte_carlo and _num_subsets(samples.n, k) <= ENUMERATION_LIMIT:
            out[i] = _enumerate(samples, k, weight)
            kinds.append("exact")
        else:
            kind, drawn = _draw(samples, k, draws, rng, draw_cache, _nest_width(samples.n, ks))
            if kind == "subsets":
                counts, sums = _subset_tallies(samples, drawn, weight)
            else:
                counts = drawn
                sums = _weighted_sums(samples, counts, weight, rng, {} if draw_cache is None else draw_cache)
            out[i] = _vote(counts, values, sums).mean()
            kinds.append("monte_carlo")
    return out, kinds


@lru_cache(maxsize=4096)
def _num_subsets(n: int, k: int) -> float:
    from math import comb

    return float(comb(n, k))


def prefix_at_k(samples: ProblemSamples, strategy: str, ks, score: np.ndarray | None = None) -> np.ndarray:
    """The study's estimate for one problem: the strategy on its first k samples (ties: first seen)."""
    if score is not None:
        samples = ProblemSamples(samples.cluster, samples.correct, score)
    return prefix_batch([samples], strategy, ks)[0]


def prefix_batch(problems: list[ProblemSamples], strategy: str, ks) -> np.ndarray:
    """Prefix estimates for many problems: (problems, ks), vectorised over problems of equal n."""
    out = np.empty((len(problems), len(ks)))
    sizes = np.array([p.n for p in problems])
    for n in np.unique(sizes):
        rows = np.flatnonzero(sizes == n)
        out[rows] = _prefix_same_n([problems[i] for i in rows], strategy, list(ks))
    return out


def _prefix_same_n(problems: list[ProblemSamples], strategy: str, ks: list[int]) -> np.ndarray:
    correct = np.stack([p.correct for p in problems])
    if strategy == "pass":
        return np.logical_or.accumulate(correct, axis=1)[:, np.array(ks) - 1].astype(float)
    cluster = np.stack([p.cluster for p in problems])
    answered = cluster >= 0
    num_problems, m = len(problems), max(p.num_clusters for p in problems)
    rows = np.arange(num_problems)
    out = np.zeros((num_problems, len(ks)))
    if strategy == "best_of_n":
        score = np.stack([p.score for p in problems])
        # answered-but-unscored ranks below every score yet above "no answer"
        key = np.where(answered, np.where(np.isnan(score), -np.finfo(float).max, score), -np.inf)
        for i, k in enumerate(ks):
            best = key[:, :k].argmax(1)  # argmax keeps the first of equal scores
            out[:, i] = np.where(answered[:, :k].any(1), correct[rows, best], 0.0)
        return out
    if strategy not in ("majority", "weighted_majority"):
        raise ValueError(f"unknown strategy {strategy!r}")
    values = np.zeros((num_problems, m))
    for r, p in enumerate(problems):
        values[r, : p.num_clusters] = p.cluster_value()
    bins = np.where(answered, cluster, m) + rows[:, None] * (m + 1)  # no answer -> extra bin m
    weight = None
    if strategy == "weighted_majority":
        weight = np.nan_to_num(np.stack([p.score for p in problems])) * answered
    for i, k in enumerate(ks):
        flat = bins[:, :k].ravel()
        size = num_problems * (m + 1)
        counts = np.bincount(flat, minlength=size).reshape(num_problems, m + 1)[:, :m]
        key = counts.astype(float) if weight is None else \
            np.bincount(flat, weights=weight[:, :k].ravel(), minlength=size).reshape(num_problems, m + 1)[:, :m]
        key = np.where(counts > 0, key, -np.inf)
        winner = key.argmax(1)  # cluster ids follow first appearance: the first tied id was seen first
        out[:, i] = np.where(counts.any(1), values[rows, winner], 0.0)
    return out
