"""Gap tests on synthetic per-problem data: verdicts that hold by construction, and a brute-force diff-in-diff."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from inference.deficit.gaps import CLOSES, DOES_NOT_CLOSE, UNDETERMINED, gap_test, peak_location


def binary(rng: np.random.Generator, p: float, n: int, prefix: str = "q") -> dict[str, float]:
    return {f"{prefix}{i}": float(rng.random() < p) for i in range(n)}


def test_a_gap_that_closes_by_construction_is_reported_closing():
    rng = np.random.default_rng(0)
    n = 400
    a1, b1 = binary(rng, 0.8, n), binary(rng, 0.4, n)  # a 40-point gap at condition 1 ...
    a2, b2 = binary(rng, 0.85, n), binary(rng, 0.85, n)  # ... none at condition 2
    g = gap_test(a1, b1, a2, b2, resamples=2000, seed=1)
    assert g["verdict"] == CLOSES
    assert g["did_high"] < 0 and g["gap_1_low"] > 0  # the CI of the change excludes 0, on the closing side
    assert not g["remaining"]


def test_a_constant_gap_never_closes():
    rng = np.random.default_rng(1)
    n = 300
    a1 = {f"q{i}": float(x) for i, x in enumerate(rng.random(n))}
    b1 = {p: max(0.0, v - 0.3) for p, v in a1.items()}
    shift = {p: float(s) for p, s in zip(a1, 0.2 * rng.random(n))}
    a2 = {p: a1[p] + shift[p] for p in a1}  # both models gain the same per problem: the gap is constant
    b2 = {p: b1[p] + shift[p] for p in a1}
    exact = gap_test(a1, b1, a2, b2, resamples=500)
    assert exact["did"] == pytest.approx(0.0, abs=1e-12)
    assert exact["verdict"] == DOES_NOT_CLOSE and exact["remaining"]  # the gap is still there
    for seed in range(10):  # noisy draws of a constant 30-point gap: "closes" would be a false claim
        rng = np.random.default_rng(100 + seed)
        g = gap_test(binary(rng, 0.7, 200), binary(rng, 0.4, 200), binary(rng, 0.75, 200), binary(rng, 0.45, 200),
                     resamples=1000, seed=seed)
        assert g["verdict"] in (DOES_NOT_CLOSE, UNDETERMINED), (seed, g)


def test_no_gap_at_the_start_is_undetermined():
    rng = np.random.default_rng(2)
    g = gap_test(binary(rng, 0.5, 200), binary(rng, 0.5, 200), binary(rng, 0.6, 200), binary(rng, 0.6, 200),
                 resamples=500)
    assert g["verdict"] == UNDETERMINED and "nothing to close" in g["reason"]


def test_diff_in_diff_equals_a_brute_force_computation():
    rng = np.random.default_rng(3)
    n, resamples, seed = 37, 300, 7
    data = [{f"p{i}": float(rng.random()) for i in rng.permutation(n)} for _ in range(4)]  # dict order shuffled
    data[3]["extra"] = 1.0  # a problem only one model has is ignored
    g = gap_test(*data, resamples=resamples, seed=seed)
    ids = sorted(f"p{i}" for i in range(n))
    total = 0.0
    for p in ids:
        total += (data[2][p] - data[3][p]) - (data[0][p] - data[1][p])
    assert g["did"] == pytest.approx(total / n, abs=1e-12) and g["num_problems"] == n
    # the CI: the same multinomial resamples, each diff-in-diff summed problem by problem
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=resamples)
    dids = []
    for row in counts:
        s = 0.0
        for c, p in zip(row, ids):
            s += c * ((data[2][p] - data[3][p]) - (data[0][p] - data[1][p]))
        dids.append(s / n)
    assert (g["did_low"], g["did_high"]) == pytest.approx(tuple(np.percentile(dids, [2.5, 97.5])), abs=1e-12)


def test_peak_location_finds_an_interior_peak_and_an_edge():
    rng = np.random.default_rng(4)
    tpp = {"m1": 5.0, "m2": 20.0, "m3": 80.0, "m4": 320.0}
    peaked = {m: binary(rng, p, 400) for m, p in zip(tpp, (0.3, 0.7, 0.5, 0.2))}
    peak = peak_location(peaked, tpp, resamples=1000)
    assert peak["peak_model"] == "m2" and peak["interior"] and peak["peak_low"] == peak["peak_high"] == 20.0
    rising = {m: binary(rng, p, 400) for m, p in zip(tpp, (0.2, 0.4, 0.6, 0.8))}
    edge = peak_location(rising, tpp, resamples=1000)
    assert edge["peak"] == 320.0 and not edge["interior"] and edge["edge_share"] == 1.0
    flat = {m: binary(rng, 0.5, 60) for m in tpp}
    wide = peak_location(flat, tpp, resamples=1000)
    assert wide["peak_low"] < wide["peak_high"]  # no real peak: the CI spans several grid points
    with pytest.raises(UserError, match="share no problem"):
        peak_location({"a": {"x": 1.0}, "b": {"y": 0.0}}, {"a": 1.0, "b": 2.0})
