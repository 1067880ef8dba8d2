"""The estimators against brute force: every k-subset of small problems, scored by plain Python."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest

from inference.ttc.estimators import (
    STRATEGIES,
    ProblemSamples,
    _enumerate,
    best_of_n_at_k,
    majority_at_k,
    majority_exact,
    pass_at_k,
    prefix_at_k,
    weighted_majority_at_k,
)


def random_problem(rng: np.random.Generator, n: int) -> ProblemSamples:
    """Random clusters (some no-answer), correctness consistent per cluster, integer scores with ties."""
    num_clusters = int(rng.integers(1, 5))
    answers = [None if rng.random() < 0.2 else f"a{rng.integers(num_clusters)}" for _ in range(n)]
    good = {f"a{c}": bool(rng.random() < 0.4) for c in range(num_clusters)}
    correct = [a is not None and good[a] for a in answers]
    score = rng.integers(-2, 3, size=n).astype(float)  # small integers: ties everywhere, exact sums
    return ProblemSamples.from_answers(answers, correct, score)


def brute_force(p: ProblemSamples, k: int) -> dict[str, float]:
    """Average of each strategy over all C(n, k) subsets, ties split uniformly, in plain Python."""
    values = p.cluster_value()
    totals = dict.fromkeys(STRATEGIES, 0.0)
    for subset in itertools.combinations(range(p.n), k):
        totals["pass"] += any(p.correct[i] for i in subset)
        voters = [i for i in subset if p.cluster[i] >= 0]
        if not voters:
            continue
        votes, sums = {}, {}
        for i in voters:
            votes[p.cluster[i]] = votes.get(p.cluster[i], 0) + 1
            sums[p.cluster[i]] = sums.get(p.cluster[i], 0.0) + p.score[i]
        for key, table in (("majority", votes), ("weighted_majority", sums)):
            top = max(table.values())
            winners = [c for c, v in table.items() if v == top]
            totals[key] += sum(values[c] for c in winners) / len(winners)
        best = max(p.score[i] for i in voters)
        chosen = [i for i in voters if p.score[i] == best]
        totals["best_of_n"] += sum(p.correct[i] for i in chosen) / len(chosen)
    return {key: total / comb(p.n, k) for key, total in totals.items()}


@pytest.mark.parametrize("seed", range(25))
def test_all_estimators_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    p = random_problem(rng, int(rng.integers(1, 13)))
    ks = list(range(1, p.n + 1))
    expected = [brute_force(p, k) for k in ks]
    got = {
        "pass": pass_at_k(p.n, np.array([p.correct.sum()]), ks)[0],
        "majority": majority_at_k(p, ks)[0],
        "best_of_n": best_of_n_at_k(p, ks),
        "weighted_majority": weighted_majority_at_k(p, ks)[0],
    }
    num_null = int(np.sum(p.cluster < 0))
    got["majority_dp"] = majority_exact(p.cluster_sizes(), p.cluster_value(), num_null, ks)  # not enumeration
    got["majority_enumerated"] = [_enumerate(p, k, None) for k in ks]  # the fallback path, too
    for e in expected:
        e["majority_dp"] = e["majority_enumerated"] = e["majority"]
    for strategy, values in got.items():
        np.testing.assert_allclose(values, [e[strategy] for e in expected], atol=1e-9, rtol=0, err_msg=strategy)


@pytest.mark.parametrize("batch_width", [160, 0])  # blocks of j at once (default) / one j at a time
def test_majority_dp_matches_brute_force_with_big_clusters(monkeypatch, batch_width):
    """The DP proper (not enumeration), with ties between big clusters and many no-answer samples."""
    monkeypatch.setattr("inference.ttc.majority_dp.DP_BATCH_WIDTH", batch_width)
    answers = ["x"] * 5 + ["y"] * 5 + ["z"] * 3 + [None] * 3
    p = ProblemSamples.from_answers(answers, [a == "y" for a in answers], np.zeros(16))
    ks = list(range(1, 17))
    np.testing.assert_allclose(majority_exact(p.cluster_sizes(), p.cluster_value(), 3, ks),
                               [brute_force(p, k)["majority"] for k in ks], atol=1e-12)


def test_enumeration_beyond_16_samples_matches_brute_force():
    """n > 16: the exact paths for few subsets (k = 1, 2, n-1, n) go through itertools, not bitmasks."""
    p = random_problem(np.random.default_rng(11), 20)
    for k in (1, 2, 19, 20):
        expected = brute_force(p, k)
        assert _enumerate(p, k, None) == pytest.approx(expected["majority"], abs=1e-12)
        assert _enumerate(p, k, p.score) == pytest.approx(expected["weighted_majority"], abs=1e-12)
        assert weighted_majority_at_k(p, [k])[1] == ["exact"]


def test_exact_majority_stays_exact_at_n_1024():
    answers = ["a"] * 700 + ["b"] * 300 + [None] * 24
    p = ProblemSamples.from_answers(answers, [a == "b" for a in answers])
    values, kinds = majority_at_k(p, [1, 2, 1024])
    assert kinds == ["exact"] * 3
    assert values[0] == pytest.approx(300 / 1024, abs=1e-12)  # k=1: the one sample's answer
    assert values[1] == pytest.approx((300 * 299 / 2 + 0.5 * 300 * 700 + 300 * 24) / comb(1024, 2), abs=1e-12)
    assert values[2] == 0.0  # everything: "a" wins


def test_monte_carlo_agrees_with_exact_at_n_40():
    rng = np.random.default_rng(7)
    answers = [None if rng.random() < 0.15 else f"a{rng.integers(4)}" for _ in range(40)]
    correct = [a in ("a1", "a3") for a in answers]
    score = rng.random(40)
    p = ProblemSamples.from_answers(answers, correct, score)
    ks = [2, 5, 10, 20]
    exact, kinds = majority_at_k(p, ks)
    assert kinds == ["exact"] * 4
    mc, mc_kinds = majority_at_k(p, ks, draws=20_000, rng=np.random.default_rng(1), force_monte_carlo=True)
    assert mc_kinds == ["monte_carlo"] * 4
    np.testing.assert_allclose(mc, exact, atol=0.015)
    # weighted: enumeration is exact for k=2 (780 subsets); compare Monte Carlo there and at k=38
    weighted_exact, weighted_kinds = weighted_majority_at_k(p, [2, 38])
    assert weighted_kinds == ["exact", "exact"]
    weighted_mc, _ = weighted_majority_at_k(p, [2, 38], draws=20_000, rng=np.random.default_rng(2),
                                            force_monte_carlo=True)
    np.testing.assert_allclose(weighted_mc, weighted_exact, atol=0.015)
    _, big_kinds = weighted_majority_at_k(p, [20])
    assert big_kinds == ["monte_carlo"]


def test_prefix_mode_matches_hand_computation():
    # order: b, a, None, a, b, c  (a is correct). Scores: 0.1 0.5 0.9 0.5 0.7 0.2
    answers = ["b", "a", None, "a", "b", "c"]
    p = ProblemSamples.from_answers(answers, [a == "a" for a in answers], [0.1, 0.5, 0.9, 0.5, 0.7, 0.2])
    ks = [1, 2, 3, 4, 5, 6]
    assert prefix_at_k(p, "pass", ks).tolist() == [0, 1, 1, 1, 1, 1]
    # k=2: b,a tie -> b seen first (wrong); k=4: a has 2 votes; k=5: a,b tie at 2 -> b first seen
    assert prefix_at_k(p, "majority", ks).tolist() == [0, 0, 0, 1, 0, 0]
    # highest score among answered: k=2 a(0.5); k=3 the 0.9 has no answer; k=5 b(0.7)
    assert prefix_at_k(p, "best_of_n", ks).tolist() == [0, 1, 1, 1, 0, 0]
    # sums: k=4 a=1.0 > b=0.1; k=5 b=0.8 < a=1.0; k=6 same
    assert prefix_at_k(p, "weighted_majority", ks).tolist() == [0, 1, 1, 1, 1, 1]


def test_no_answer_subsets_score_zero():
    p = ProblemSamples.from_answers([None, None, "a"], [False, False, True], [5.0, 5.0, 0.0])
    assert majority_at_k(p, [1])[0][0] == pytest.approx(1 / 3)
    assert best_of_n_at_k(p, [1, 2])[1] == pytest.approx(2 / 3)  # "a" is in 2 of the 3 pairs


def test_default_vote_weights_equal_brute_force_when_scores_are_already_weights():
    """`moelab aggregate`'s default (`auto`) sums non-negative scores as they are (issue #28: a sigmoid of a
    probability flattened the weights: weighted majority@3 0.2732 where the sum gives 0.2721)."""
    from inference.ttc.aggregate import aggregate_samples, resolve_vote_weight

    rng = np.random.default_rng(7)
    rows, problems = [], []
    for problem in range(30):
        n = 6
        answers = [f"a{rng.integers(3)}" for _ in range(n)]
        good = {f"a{c}": bool(rng.random() < 0.4) for c in range(3)}
        scores = rng.choice([0.125, 0.25, 0.375, 0.5, 0.625, 0.75], size=n)
        problems.append(ProblemSamples.from_answers(answers, [good[a] for a in answers], scores))
        rows += [{"problem_id": f"p{problem}", "sample_idx": i, "answer": a, "correct": good[a], "score": float(s)}
                 for i, (a, s) in enumerate(zip(answers, scores))]
    got = {r["k"]: r for r in aggregate_samples(rows, ks=[1, 2, 3, 6], strategies=["weighted_majority"], bootstrap=0)}
    for k in (1, 2, 3, 6):
        expected = np.mean([brute_force(p, k)["weighted_majority"] for p in problems])
        assert abs(got[k]["accuracy"] - expected) < 1e-12, k
        assert got[k]["vote_weight"] == "raw"
    assert resolve_vote_weight(np.array([-1.0, 2.0]), "score") == "sigmoid"
    assert resolve_vote_weight(np.array([-1.0, -2.0]), "mean_logprob") == "exp"
    assert resolve_vote_weight(np.array([0.5]), "score", "sigmoid") == "sigmoid"


def test_dp_costs_for_every_k_equal_the_cost_of_each_k():
    """The exact/Monte Carlo choice of the majority DP is made from costs computed once per problem."""
    from inference.ttc.estimators import majority_dp_cost, majority_dp_costs

    rng = np.random.default_rng(3)
    ks = [1, 2, 3, 4, 8, 16, 32, 64, 100, 128, 256, 512, 1024]
    for _ in range(200):
        sizes = rng.integers(0, 400, size=int(rng.integers(1, 9)))
        calls, flops = majority_dp_costs(sizes, ks)
        assert [(int(c), float(f)) for c, f in zip(calls, flops)] == [majority_dp_cost(sizes, k) for k in ks]


def test_permutation_pool_rows_are_uniform_and_pairwise_independent():
    """Rows built as P_i o Q_j: each row a uniform permutation, two rows independent (chi-square-free check:
    every frequency within 5 standard deviations of its expectation)."""
    from inference.ttc.estimators import _permutation_prefix_sums

    rng = np.random.default_rng(5)
    values = np.array([1.0, 10.0, 100.0])  # prefix sums identify the order
    trials = 6000
    first, pair, other = np.zeros(3), np.zeros((3, 3)), np.zeros((3, 3))
    for _ in range(trials):
        prefix = _permutation_prefix_sums(values, 4, rng)  # a = b = 2: rows (0,0) (0,1) (1,0) (1,1)
        lead = np.searchsorted(values, prefix[:, 1])  # which value comes first in each row
        first[lead[0]] += 1
        pair[lead[0], lead[1]] += 1  # rows sharing P_0
        other[lead[0], lead[2]] += 1  # rows sharing Q_0
    for counts, p in ((first, 1 / 3), (pair.ravel(), 1 / 9), (other.ravel(), 1 / 9)):
        sd = np.sqrt(trials * p * (1 - p))
        assert np.all(np.abs(counts - trials * p) < 5 * sd), counts


def test_nested_small_subsets_are_uniform_for_every_k():
    """One ordered draw serves every small k: each prefix is a uniform k-subset."""
    from inference.ttc.estimators import _draw

    p = ProblemSamples.from_answers(["a", "b", "c", "d", "e", "f", "g", "h", "i"], [True] * 9)
    cache: dict = {}
    rng = np.random.default_rng(9)
    _, two = _draw(p, 2, 20_000, rng, cache, width=3)
    _, three = _draw(p, 3, 20_000, rng, cache, width=3)
    assert np.array_equal(two, three[:, :2])  # nested
    for drawn, k in ((two, 2), (three, 3)):
        assert all(len(set(row)) == k for row in drawn[:500])
        hits = np.bincount(drawn.ravel(), minlength=9)  # each sample in k/9 of the subsets
        expected, sd = 20_000 * k / 9, np.sqrt(20_000 * k / 9)
        assert np.all(np.abs(hits - expected) < 5 * sd), hits


def test_majority_dp_blocks_of_j_equal_one_j_at_a_time(monkeypatch):
    """The batched DP (blocks of winning counts, small blocks forced too) against the one-j-at-a-time
    sums, on profiles up to n = 1,024 and widths past DP_BATCH_WIDTH."""
    import inference.ttc.majority_dp as majority_dp

    rng = np.random.default_rng(4)
    for trial in range(30):
        n = int(rng.integers(2, 1025))
        sizes = rng.multinomial(n, rng.dirichlet(np.full(int(rng.integers(2, 9)), 0.5)))
        sizes, num_null = sizes[:-1], int(sizes[-1])
        values = rng.random(len(sizes)) if trial % 2 else (rng.random(len(sizes)) < 0.4).astype(float)
        ks = sorted({int(k) for k in rng.integers(1, min(n, 200) + 1, size=4)})
        monkeypatch.setattr(majority_dp, "DP_BATCH_WIDTH", 0)
        one_j = majority_dp.majority_exact(sizes, values, num_null, ks)
        monkeypatch.setattr(majority_dp, "DP_BATCH_WIDTH", 10_000)
        monkeypatch.setattr(majority_dp, "DP_BLOCK_ENTRIES", [1 << 21, 1][trial % 2])  # one block / one j a block
        np.testing.assert_allclose(majority_dp.majority_exact(sizes, values, num_null, ks), one_j, rtol=0, atol=1e-13)


def test_permutation_prefix_summed_in_steps_equals_one_cumsum():
    """The pool's prefix sums are extended as larger subsets are asked for: bit for bit one cumsum."""
    from inference.ttc.estimators import _permutation_pool, _permutation_prefix_sums, _pool_prefix

    values = np.random.default_rng(2).random(300) * 3
    whole = _permutation_prefix_sums(values, 256, np.random.default_rng(8))
    pool: dict = {}
    _permutation_pool(values, 256, np.random.default_rng(8), pool)
    for x_max in (5, 5, 40, 41, 299, 300):
        assert np.array_equal(_pool_prefix(pool, x_max)[:, : x_max + 1], whole[:, : x_max + 1])
