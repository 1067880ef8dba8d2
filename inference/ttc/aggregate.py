"""Scored samples -> accuracy curves with bootstrap confidence intervals and compute axes.

The input is the "scored samples table", one row per sample, so samples from the lab's store,
lm-eval, verl or anywhere else aggregate the same way:
  problem_id, sample_idx, answer (cluster key or null), correct (bool),
  optional: model (default "model"), score, mean_logprob, num_tokens.
It may be a JSONL file, a parquet file, a directory of parquet (or JSONL) shards, a pyarrow Table,
or a list of dicts (`inference.ttc.samples_table` reads it).

Three steps, kept apart so each can be reused:
  1. `estimate_per_problem`: for each model, every problem's expected accuracy at every k and
     strategy (`inference.ttc.estimators`), plus mean generated tokens per sample.
  2. `summarize`: the mean over problems with a percentile bootstrap over problems. Problems are
     resampled once per model and the precomputed per-problem values averaged, so 1,000
     resamples cost one small matrix product, and every strategy and k of a model sees the same
     resamples (the curves' CIs are paired).
  3. `paired_differences`: strategy A minus strategy B (same model), and model A minus model B
     (same strategy, shared problems), with bootstrap CIs of the difference.
best_of_n ranks samples by the score column (`--score-column`, default `score`, else
`mean_logprob`); weighted_majority sums a non-negative weight per answer, a monotone map of the score
(`vote_weights`, `--vote-weight`). By default (`auto`, `resolve_vote_weight`): exp(mean_logprob) (the
per-token geometric-mean probability); scores that are already non-negative (a reward model's
probabilities) as they are; sigmoid only for scores that can be negative (reward-model logits), so that
every vote adds weight: summing raw negative scores would invert the vote (A,A,A at -1 each lose to B at
-2), and a sigmoid of a probability would flatten the weights toward plain majority. The choice made is
the `vote_weight` column of the metrics (weighted_majority rows). `--vote-weight raw` sums the scores
as they are, as the study summed ArmoRM's (said in a warning when some are negative).
Compute axes: mean_tokens = k x mean generated tokens per sample (prompt tokens are not counted);
flops = `inference.ttc.compute.generation_flops` (2 x non-embedding active parameters x k x (prompt +
generated tokens per sample); NaN for names the index does not know or samples without `prompt_tokens`).
"""

from __future__ import annotations

import csv
import math
import sys
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.stats import bootstrap_ci, bootstrap_weights  # noqa: F401 - the one bootstrap; re-exported for callers
from inference.ttc.compute import forward_params, generation_flops
from inference.ttc.estimators import (
    STRATEGIES,
    ProblemSamples,
    best_of_n_at_k,
    majority_at_k,
    pass_at_k,
    prefix_batch,
    weighted_majority_at_k,
)
from inference.ttc.samples_table import column as _column
from inference.ttc.samples_table import read_samples

COLUMNS = ["model", "strategy", "k", "accuracy", "ci_low", "ci_high", "num_problems", "mean_tokens", "flops",
           "estimator", "vote_weight"]
PAIRED_COLUMNS = ["a_model", "a_strategy", "b_model", "b_strategy", "k", "difference", "ci_low", "ci_high",
                  "num_problems"]
REQUIRED = ("problem_id", "sample_idx", "answer", "correct")
ESTIMATORS = ("exact", "prefix", "monte_carlo")


@dataclass
class ModelEstimates:
    """Per-problem estimates of one model: values[strategy] is (problems, ks)."""

    model: str
    problem_ids: list[str]
    ks: list[int]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    estimator: dict[str, list[str]] = field(default_factory=dict)  # per strategy, one label per k
    tokens_per_sample: float = math.nan
    prompt_tokens_per_sample: float = math.nan  # for the FLOPs axis (inference.ttc.compute)
    vote_weight: str = ""  # the map weighted_majority used (`resolve_vote_weight`); "" without scores


VOTE_WEIGHTS = ("auto", "exp", "sigmoid", "raw")


def resolve_vote_weight(score: np.ndarray, score_name: str, how: str = "auto") -> str:
    """The map `auto` stands for, from what the score column holds: `exp` for `mean_logprob`, `raw` for
    scores that are all non-negative (already weights), `sigmoid` for scores that can be negative."""
    if how not in VOTE_WEIGHTS:
        raise UserError(f"vote weight must be one of {', '.join(VOTE_WEIGHTS)}; got {how!r}")
    if how != "auto":
        return how
    if score_name == "mean_logprob":
        return "exp"
    return "raw" if np.nanmin(score, initial=0.0) >= 0 else "sigmoid"


def vote_weights(score: np.ndarray, score_name: str, how: str = "auto", where: str = "samples") -> np.ndarray:
    """The weight a sample adds to its answer in weighted majority: a monotone map of its score (so
    best-of-n, which ranks by it, is unchanged); `how` as `resolve_vote_weight`."""
    how = resolve_vote_weight(score, score_name, how)
    if how == "exp":
        return np.exp(score)
    if how == "sigmoid":
        return np.exp(-np.logaddexp(0.0, -score))  # 1 / (1 + e^-x) without overflow
    if np.nanmin(score, initial=0.0) < 0:
        print(f"warning: {where}: weighted majority sums raw scores, some negative ({score_name}), as the study "
              f"summed its reward model's: a negative score votes against its answer", file=sys.stderr)
    return score


def pick_score_column(names: list[str], score_column: str | None, where: str) -> str | None:
    """`score_column` if given (must exist), else `score`, else `mean_logprob`, else None."""
    if score_column:
        if score_column not in names:
            raise UserError(f"{where}: no score column {score_column!r} (columns: {', '.join(names)})")
        return score_column
    return next((name for name in ("score", "mean_logprob") if name in names), None)


# ---------------------------------------------------------------- per-problem estimates

def default_ks(n: int) -> list[int]:
    """Powers of two up to n, plus n: the grid of `moelab aggregate` and of `moelab sweep` alike.
    k = n is included because it is the one estimate that uses every stored sample."""
    ks = [2 ** i for i in range(n.bit_length()) if 2 ** i <= n]
    return ks + ([n] if n not in ks else [])


def estimate_per_problem(samples, ks: list[int] | None = None, strategies: list[str] | None = None, *,
                         estimator: str = "exact", score_column: str | None = None, seed: int = 0,
                         mc_draws: int = 2000, workers: int | Executor = 1, where: str | None = None,
                         vote_weight: str = "auto") -> list[ModelEstimates]:
    """Every model's per-problem accuracy at every k for every strategy (see module docstring).
    workers: processes for the voting strategies, or an Executor whose processes vote (results are
    identical for any number); the closed forms (pass, best_of_n) and token means are computed here while
    they vote.
    vote_weight: how weighted majority turns scores into weights (`vote_weights`)."""
    where = where or (str(samples) if isinstance(samples, (str, Path)) else "samples")
    if isinstance(workers, int) and workers > 1:  # one pool for every model (one model's votes run ahead)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return estimate_per_problem(samples, ks, strategies, estimator=estimator, score_column=score_column,
                                        seed=seed, mc_draws=mc_draws, workers=pool, where=where,
                                        vote_weight=vote_weight)
    table = read_samples(samples)
    names = table.column_names
    for name in REQUIRED:
        if name not in names:
            raise UserError(f"{where}: samples table has no column {name!r} (required: {', '.join(REQUIRED)})")
    if estimator not in ESTIMATORS:
        raise UserError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    score_name = pick_score_column(names, score_column, where)
    if strategies is None:
        strategies = [s for s in STRATEGIES if score_name or s not in ("best_of_n", "weighted_majority")]
    for s in strategies:
        if s not in STRATEGIES:
            raise UserError(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")
        if s in ("best_of_n", "weighted_majority") and not score_name:
            raise UserError(f"{where}: strategy {s!r} needs a score column ('score' or 'mean_logprob'); none found")
    if len(table) == 0:
        raise UserError(f"{where}: no samples")

    if "model" in names:
        import pyarrow as pa
        import pyarrow.compute as pc

        filled = pc.fill_null(pc.cast(table.column("model"), pa.string()), "model")  # unnamed rows: "model"
        model_code, model_names = _column(table.set_column(names.index("model"), "model", filled), "model", "code",
                                          where)
    else:
        model_code, model_names = np.zeros(len(table), dtype=np.int64), ["model"]
    problem_code, problem_names = _column(table, "problem_id", "code", where)
    if (problem_code < 0).any():
        raise UserError(f"{where}: column 'problem_id' has missing values")
    answer_code, _ = _column(table, "answer", "code", where)
    sample_idx = _column(table, "sample_idx", "int", where)
    correct = _column(table, "correct", "bool", where)
    score = _column(table, score_name, "float", where) if score_name else None
    weight_map = None if score is None else resolve_vote_weight(score, score_name, vote_weight)
    weight = None if score is None else vote_weights(score, score_name, weight_map, where)
    tokens = _column(table, "num_tokens", "float", where) if "num_tokens" in names else None
    prompt_tokens = _column(table, "prompt_tokens", "float", where) if "prompt_tokens" in names else None

    order = np.lexsort((sample_idx, problem_code, model_code))
    sorted_model, sorted_problem = model_code[order], problem_code[order]
    new_group = (sorted_model[1:] != sorted_model[:-1]) | (sorted_problem[1:] != sorted_problem[:-1])
    sorted_idx = sample_idx[order]
    duplicate = np.flatnonzero(~new_group & (sorted_idx[1:] == sorted_idx[:-1]))
    if len(duplicate):
        i = order[duplicate[0]]
        raise UserError(f"{where}: duplicate sample: model {model_names[model_code[i]]!r}, problem "
                        f"{problem_names[problem_code[i]]!r}, sample_idx {sample_idx[i]}")
    starts = np.flatnonzero(np.concatenate([[True], new_group]))
    ends = np.append(starts[1:], len(order))

    def _finish(est: ModelEstimates, problems: list, groups: list, voted) -> ModelEstimates:
        """The closed forms, prefix mode and token means, computed here while the helpers vote; then the votes."""
        if tokens is not None:
            est.tokens_per_sample = _mean_per_sample(tokens, order, groups)
        if prompt_tokens is not None:
            est.prompt_tokens_per_sample = _mean_per_sample(prompt_tokens, order, groups)
        for strategy in strategies:
            if strategy in ("pass", "best_of_n") or estimator == "prefix":
                est.values[strategy], est.estimator[strategy] = _estimate(problems, strategy, est.ks, estimator)
        for strategy, (values, labels) in voted().items():
            est.values[strategy], est.estimator[strategy] = values, labels
        est.values = {s: est.values[s] for s in strategies}  # keep the requested order
        est.estimator = {s: est.estimator[s] for s in strategies}
        return est

    votes = [s for s in strategies if s in ("majority", "weighted_majority") and estimator != "prefix"]
    results: list[ModelEstimates] = []
    unfinished = None  # the model whose votes run while the next one's are handed out (one model ahead)
    for m_index, m_code in enumerate(np.unique(model_code)):
        groups = [(a, b) for a, b in zip(starts, ends) if model_code[order[a]] == m_code]
        problems = []
        for a, b in groups:
            rows = order[a:b]
            problems.append(_problem(answer_code[rows], correct[rows], None if weight is None else weight[rows]))
        sizes = np.array([p.n for p in problems])
        model_ks = _model_ks(ks, int(sizes.min()), model_names[m_code])
        est = ModelEstimates(model=model_names[m_code], ks=model_ks,
                             problem_ids=[problem_names[problem_code[order[a]]] for a, _ in groups],
                             vote_weight=weight_map or "")
        voted = _start_votes(problems, votes, model_ks, estimator == "monte_carlo", [seed, m_index], mc_draws,
                             workers)
        if unfinished is not None:
            results.append(_finish(*unfinished))
        unfinished = (est, problems, groups, voted)
    results.append(_finish(*unfinished))
    return results


def _mean_per_sample(values: np.ndarray, order: np.ndarray, groups: list) -> float:
    """Mean over problems of each problem's mean over its samples (NaN where nothing is known)."""
    per_problem = [np.nanmean(values[order[a:b]]) if np.isfinite(values[order[a:b]]).any() else math.nan
                   for a, b in groups]
    return float(np.nanmean(per_problem)) if np.isfinite(per_problem).any() else math.nan


def _problem(answer_code: np.ndarray, correct: np.ndarray, weight: np.ndarray | None) -> ProblemSamples:
    """Relabel answer codes 0..m-1 in order of first appearance (prefix mode's 'first seen' tie rule)."""
    answered = answer_code >= 0
    cluster = np.full(len(answer_code), -1, dtype=np.int64)
    if answered.any():
        uniq, first, inverse = np.unique(answer_code[answered], return_index=True, return_inverse=True)
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[np.argsort(first)] = np.arange(len(uniq))
        cluster[answered] = rank[inverse]
    return ProblemSamples(cluster, correct, weight)


def _model_ks(ks: list[int] | None, n_min: int, model: str) -> list[int]:
    if not ks:
        return default_ks(n_min)
    kept = sorted({int(k) for k in ks if 1 <= int(k) <= n_min})
    dropped = sorted({int(k) for k in ks} - set(kept))
    if dropped:
        print(f"warning: {model}: k={dropped} skipped (the smallest problem has {n_min} samples)", file=sys.stderr)
    if not kept:
        raise UserError(f"{model}: no k in {sorted(ks)} is between 1 and {n_min} (samples per problem)")
    return kept


def _estimate(problems: list[ProblemSamples], strategy: str, ks: list[int],
              estimator: str) -> tuple[np.ndarray, list[str]]:
    """Closed forms (pass, best_of_n) and prefix mode: (problems, ks) values and one label per k."""
    values = np.empty((len(problems), len(ks)))
    if estimator == "prefix":
        return prefix_batch(problems, strategy, ks), ["prefix"] * len(ks)
    if strategy == "pass":  # vectorised over problems with the same n
        sizes = np.array([p.n for p in problems])
        hits = np.array([p.correct.sum() for p in problems])
        for n in np.unique(sizes):
            values[sizes == n] = pass_at_k(int(n), hits[sizes == n], ks)
        return values, ["exact"] * len(ks)
    for i, p in enumerate(problems):
        values[i] = best_of_n_at_k(p, ks)
    return values, ["exact"] * len(ks)


VOTE_CHUNK = 32  # problems per Monte-Carlo random stream: results do not depend on the worker count;
#                 small enough that the last chunks keep every worker busy


def _start_votes(problems: list[ProblemSamples], strategies: list[str], ks: list[int], force_monte_carlo: bool,
                 seed: list[int], draws: int, workers: int | Executor):
    """majority / weighted_majority for every problem, in chunks of VOTE_CHUNK problems with their
    own seeded random stream (the results do not depend on who runs them): handed to the Executor's
    processes now, or run here when called. Returns the call that gives {strategy: (values, labels)}."""
    chunks = [(problems[i:i + VOTE_CHUNK], strategies, ks, force_monte_carlo, seed + [i // VOTE_CHUNK], draws)
              for i in range(0, len(problems), VOTE_CHUNK)] if strategies else []
    if isinstance(workers, Executor) and chunks:
        pending = workers.map(_votes_chunk, *zip(*chunks))  # every chunk submitted now
        return lambda: _vote_results(list(pending), strategies, ks)
    return lambda: _vote_results([_votes_chunk(*chunk) for chunk in chunks], strategies, ks)


def _vote_results(parts: list[dict], strategies: list[str], ks: list[int]) -> dict[str, tuple]:
    """{strategy: (values per problem and k, estimator label per k)} from the chunks' results, in order."""
    out = {}
    for s in strategies:
        labels = [set() for _ in ks]
        for part in parts:
            for label_set, kinds in zip(labels, part[s][1]):
                label_set |= kinds
        out[s] = (np.concatenate([part[s][0] for part in parts]), ["+".join(sorted(x)) for x in labels])
    return out


def _votes_chunk(problems, strategies, ks, force_monte_carlo, seed, draws):
    """One chunk of problems; majority and weighted majority share each problem's Monte-Carlo draws."""
    estimate = {"majority": majority_at_k, "weighted_majority": weighted_majority_at_k}
    rng = np.random.default_rng(seed)
    values = {s: np.empty((len(problems), len(ks))) for s in strategies}
    labels = {s: [set() for _ in ks] for s in strategies}
    for i, p in enumerate(problems):
        cache: dict = {}  # freed with the problem
        for s in strategies:
            values[s][i], kinds = estimate[s](p, ks, draws=draws, rng=rng, force_monte_carlo=force_monte_carlo,
                                             draw_cache=cache)
            for label_set, kind in zip(labels[s], kinds):
                label_set.add(kind)
    return {s: (values[s], labels[s]) for s in strategies}


# ---------------------------------------------------------------- bootstrap, summary, differences

def summarize(estimates: list[ModelEstimates], bootstrap: int = 1000, seed: int = 0) -> list[dict]:
    """Tidy rows (COLUMNS): one per model x strategy x k."""
    rows = []
    for est in estimates:
        params = forward_params(est.model)
        for strategy, values in est.values.items():
            mean, low, high = bootstrap_ci(values, bootstrap, seed)
            for j, k in enumerate(est.ks):
                tokens = k * est.tokens_per_sample
                rows.append(dict(model=est.model, strategy=strategy, k=k, accuracy=float(mean[j]),
                                 ci_low=float(low[j]), ci_high=float(high[j]), num_problems=len(values),
                                 mean_tokens=tokens,
                                 flops=generation_flops(params, k, est.prompt_tokens_per_sample, est.tokens_per_sample),
                                 estimator=est.estimator[strategy][j],
                                 vote_weight=est.vote_weight if strategy == "weighted_majority" else ""))
    return rows


def paired_differences(estimates: list[ModelEstimates], bootstrap: int = 1000, seed: int = 0) -> list[dict]:
    """Strategy pairs within each model, and model pairs per strategy on their shared problems and ks."""
    rows = []

    def add(a_model, a_strategy, b_model, b_strategy, ks, diff):
        mean, low, high = bootstrap_ci(diff, bootstrap, seed)
        for j, k in enumerate(ks):
            rows.append(dict(a_model=a_model, a_strategy=a_strategy, b_model=b_model, b_strategy=b_strategy, k=k,
                             difference=float(mean[j]), ci_low=float(low[j]), ci_high=float(high[j]),
                             num_problems=len(diff)))

    for est in estimates:
        names = list(est.values)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                add(est.model, a, est.model, b, est.ks, est.values[a] - est.values[b])
    for i, ea in enumerate(estimates):
        for eb in estimates[i + 1:]:
            shared = sorted(set(ea.problem_ids) & set(eb.problem_ids))
            ks = [k for k in ea.ks if k in eb.ks]
            if not shared or not ks:
                continue
            ia, ib = _positions(ea, shared), _positions(eb, shared)
            ja, jb = [ea.ks.index(k) for k in ks], [eb.ks.index(k) for k in ks]
            for strategy in ea.values:
                if strategy in eb.values:
                    diff = ea.values[strategy][np.ix_(ia, ja)] - eb.values[strategy][np.ix_(ib, jb)]
                    add(ea.model, strategy, eb.model, strategy, ks, diff)
    return rows


def _positions(est: ModelEstimates, ids: list[str]) -> list[int]:
    where = {p: i for i, p in enumerate(est.problem_ids)}
    return [where[p] for p in ids]


def aggregate_samples(samples, ks: list[int] | None = None, strategies: list[str] | None = None, *,
                      estimator: str = "exact", bootstrap: int = 1000, seed: int = 0,
                      score_column: str | None = None, mc_draws: int = 2000, workers: int | Executor = 1,
                      vote_weight: str = "auto") -> list[dict]:
    """Scored samples (path, pyarrow Table or list of dicts) -> tidy metric rows (COLUMNS)."""
    estimates = estimate_per_problem(samples, ks, strategies, estimator=estimator, score_column=score_column,
                                     seed=seed, mc_draws=mc_draws, workers=workers, vote_weight=vote_weight)
    return summarize(estimates, bootstrap, seed)


def write_csv(rows: list[dict], path, columns: list[str] = COLUMNS) -> Path:
    """Metric rows as CSV (columns beyond `columns` dropped), written atomically."""
    from core.files import atomic_write_csv

    return atomic_write_csv(path, rows, columns, extrasaction="ignore")


def read_metrics(path) -> list[dict]:
    """A metrics CSV back into rows with numbers as numbers (what `moelab plot` reads)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such metrics CSV")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS[:9] if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: not a metrics CSV, missing column(s) {', '.join(missing)}")
        rows = []
        for line_no, row in enumerate(reader, 2):
            try:
                for name in ("accuracy", "ci_low", "ci_high", "mean_tokens", "flops"):
                    row[name] = float(row[name]) if row[name] not in ("", None) else math.nan
                row["k"], row["num_problems"] = int(row["k"]), int(row["num_problems"])
            except ValueError as err:
                raise UserError(f"{path}:{line_no}: {err}") from None
            rows.append(row)
    return rows
