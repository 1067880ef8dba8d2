"""Gap tests: does more test-time compute, or GRPO, close the accuracy gap between two models?

The study's claim is about a *difference of differences*: a denser model `a` beats a sparser model
`b`, and GRPO or more samples raise both, but does the gap between them shrink? For two conditions
c1 -> c2 (k = 1 -> k = N samples, or before -> after GRPO) and per-problem accuracies on the same
problems (same prompts, same sampling seeds; the lab's sweeps seed sample i of a prompt the same way
for every model, `inference.generation.store.sample_seed`):

    gap(c)  = mean over problems of acc_a(p, c) - acc_b(p, c)
    did     = gap(c2) - gap(c1)                        difference-in-differences
    closing = -sign(gap(c1)) x did                     > 0: the gap shrank

Every interval is a percentile bootstrap over problems with ONE resample matrix
(`core.stats.bootstrap_weights`) applied to the four per-problem vectors, so the CIs of gap(c1),
gap(c2) and did are paired: problem difficulty cancels, as in `rl.report`'s before/after change.

Verdicts are claims only where an interval excludes zero:
- "closes": the closing CI lies above 0 (the gap shrank; `remaining` says whether gap(c2)'s CI
  still excludes 0, i.e. narrowed but not gone);
- "does not close": the closing CI lies below 0 (the gap widened), or it contains 0 while gap(c2)'s
  CI excludes 0 on gap(c1)'s side (the gap is still there and nothing says it shrank);
- "undetermined": anything else, including no significant gap at c1 (nothing to close).

`peak_location`: where accuracy peaks along a model property (TPP), with a bootstrap CI of the
argmax over the same problem resamples, and whether the peak is interior or at the grid's edge.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from core.errors import UserError
from core.stats import bootstrap_weights

CLOSES, DOES_NOT_CLOSE, UNDETERMINED = "closes", "does not close", "undetermined"
GAP_COLUMNS = ["num_problems", "gap_1", "gap_1_low", "gap_1_high", "gap_2", "gap_2_low", "gap_2_high", "did",
               "did_low", "did_high", "verdict", "remaining", "reason"]


def aligned(*per_problem: Mapping[str, float]) -> tuple[list[str], list[np.ndarray]]:
    """The problems every mapping has (sorted ids) and each mapping's values on them."""
    shared = sorted(set.intersection(*(set(m) for m in per_problem))) if per_problem else []
    if not shared:
        raise UserError("the compared models share no problem: gap tests need the same problems for both")
    return shared, [np.array([float(m[p]) for p in shared]) for m in per_problem]


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _excludes_zero(low: float, high: float) -> int:
    """+1 if the interval lies above 0, -1 below, 0 if it contains 0 (or is unknown)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return 0
    return 1 if low > 0 else -1 if high < 0 else 0


def gap_test(a1: Mapping[str, float], b1: Mapping[str, float], a2: Mapping[str, float], b2: Mapping[str, float], *,
             resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Gap of a over b at condition 1 and 2, their difference and its paired bootstrap CI, and the verdict.

    Each argument maps problem id -> that model's accuracy on the problem under that condition
    (0/1 for one greedy answer, or the expected accuracy at a budget k from `inference.ttc.aggregate`)."""
    if resamples < 1:
        raise UserError(f"gap tests need bootstrap resamples >= 1, got {resamples}")
    shared, (va1, vb1, va2, vb2) = aligned(a1, b1, a2, b2)
    d1, d2 = va1 - vb1, va2 - vb2
    weights = bootstrap_weights(len(shared), resamples, seed)
    boot1, boot2 = weights @ d1 / len(shared), weights @ d2 / len(shared)
    gap_1, gap_2 = float(d1.mean()), float(d2.mean())
    out = {"num_problems": len(shared), "gap_1": gap_1, "gap_2": gap_2, "did": gap_2 - gap_1}
    out["gap_1_low"], out["gap_1_high"] = _interval(boot1, level)
    out["gap_2_low"], out["gap_2_high"] = _interval(boot2, level)
    out["did_low"], out["did_high"] = _interval(boot2 - boot1, level)
    out.update(_verdict(out))
    return out


def _verdict(g: dict) -> dict:
    start = _excludes_zero(g["gap_1_low"], g["gap_1_high"])
    end = _excludes_zero(g["gap_2_low"], g["gap_2_high"])
    remaining = bool(start and end == start)
    if not start:
        return {"verdict": UNDETERMINED, "remaining": remaining,
                "reason": "no significant gap at the first condition: nothing to close"}
    closing = -start * _excludes_zero(g["did_low"], g["did_high"])  # +1 shrank, -1 widened, 0 unknown
    if closing > 0:
        return {"verdict": CLOSES, "remaining": remaining,
                "reason": "the gap shrank" + (" but is still significant" if remaining else " and is no longer "
                                                                                           "significant")}
    if closing < 0:
        return {"verdict": DOES_NOT_CLOSE, "remaining": remaining, "reason": "the gap widened"}
    if remaining:
        return {"verdict": DOES_NOT_CLOSE, "remaining": remaining,
                "reason": "the gap is still significant and did not shrink significantly"}
    return {"verdict": UNDETERMINED, "remaining": remaining,
            "reason": "the change of the gap is not significant and neither is the gap at the second condition"}


def peak_location(per_model: Mapping[str, Mapping[str, float]], positions: Mapping[str, float], *,
                  resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Where accuracy peaks along `positions` (e.g. TPP per model) and a bootstrap CI of that location.

    The argmax is taken over the models' mean accuracies on their shared problems, once on the data
    and once per problem resample; the CI is the percentile interval of the resampled peak positions
    (a discrete set: the interval's ends are grid points). `interior` says whether the data's peak is
    strictly inside the grid; `edge_share` is the share of resamples whose peak is at either end."""
    models = sorted(per_model, key=lambda m: positions[m])
    if len(models) < 2:
        raise UserError(f"a peak location needs at least two models, got {len(models)}")
    shared, columns = aligned(*(per_model[m] for m in models))
    values = np.stack(columns, axis=1)  # (problems, models), models ordered by position
    where = np.array([float(positions[m]) for m in models])
    means = values.mean(0)
    best = int(np.argmax(means))
    boot = bootstrap_weights(len(shared), resamples, seed) @ values / len(shared)
    peaks = np.argmax(boot, axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(where[peaks], [tail, 100 - tail], method="inverted_cdf")
    return {"num_problems": len(shared), "num_models": len(models), "peak_model": models[best],
            "peak": float(where[best]), "peak_low": float(low), "peak_high": float(high),
            "interior": 0 < best < len(models) - 1,
            "edge_share": float(np.mean((peaks == 0) | (peaks == len(models) - 1))),
            "grid": [float(x) for x in where]}


def describe_gap(g: dict, what: str, percent: bool = True) -> str:
    """One report line: the two gaps and their change with CIs, and the verdict with its reason."""
    scale, unit = (100.0, " pts") if percent else (1.0, "")

    def show(value: float, low: float, high: float) -> str:
        return f"{scale * value:+.1f}{unit} [{scale * low:+.1f}, {scale * high:+.1f}]"

    return (f"{what}: gap {show(g['gap_1'], g['gap_1_low'], g['gap_1_high'])} -> "
            f"{show(g['gap_2'], g['gap_2_low'], g['gap_2_high'])}, change {show(g['did'], g['did_low'], g['did_high'])}"
            f" on {g['num_problems']} problems: **{g['verdict']}** ({g['reason']})")
