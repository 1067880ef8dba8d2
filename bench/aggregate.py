"""Benchmark: the lab's aggregation against the study's per-problem prefix loop.

Workload (issue 5): 1,319 problems (GSM8K test) x 1,024 synthetic samples, realistic shape: a few
distinct answers per problem with one or two dominant, ~5% without an answer, reward-like scores
(correct samples score higher on average, three decimals so ties occur), token counts.

Timed:
  lab      `estimate_per_problem` + `summarize`: all four strategies, every power-of-two k up to
           1,024, expectation over k-subsets (exact / Monte Carlo as the estimators choose),
           1,000 bootstrap resamples on every point.
  lab prefix   the same with --estimator prefix (the study's numbers, vectorised).
  study    a Python loop per problem over the first k samples (as Large Language Monkeys and the
           study's fork compute coverage, majority, most-rewarded and reward-weighted vote).
The lab's prefix numbers are checked against the study loop's. Last line:
`ratio: <study loop time / lab prefix time>` (the same metrics, so a like-for-like speed-up); the
lab's full-estimator time is printed with the 10 s target of issue 28 (wall, and CPU beside it since
other jobs may share the cores). `--out` appends the figures and their provenance (command, commit,
date, load average) as one JSON line (`docs/results/bench-aggregate.jsonl`).

    python bench/aggregate.py [--problems 1319] [--samples 1024] [--workers 2] [--out RUNS.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np


def synthetic_samples(num_problems: int, num_samples: int, seed: int = 0):
    """A pyarrow Table of scored samples with the shape of a real GSM8K sweep."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    difficulty = rng.beta(2, 2, size=num_problems)  # P(correct) per problem
    num_wrong = 1 + rng.poisson(3, size=num_problems)
    columns = defaultdict(list)
    for p in range(num_problems):
        weights = np.concatenate([[difficulty[p]], (1 - difficulty[p]) * rng.dirichlet(np.full(num_wrong[p], 0.5))])
        cluster = rng.choice(len(weights), size=num_samples, p=weights)
        answer = np.array([f"{p}:{c}" for c in range(len(weights))], dtype=object)[cluster]
        no_answer = rng.random(num_samples) < 0.05
        answer[no_answer] = None
        correct = (cluster == 0) & ~no_answer
        score = np.round(np.clip(rng.normal(np.where(correct, 0.6, 0.4), 0.2), 0, 1), 3)
        columns["problem_id"].append(np.full(num_samples, f"gsm8k-{p}", dtype=object))
        columns["sample_idx"].append(np.arange(num_samples))
        columns["answer"].append(answer)
        columns["correct"].append(correct)
        columns["score"].append(score)
        columns["num_tokens"].append(rng.integers(80, 400, size=num_samples))
    table = {name: np.concatenate(parts) for name, parts in columns.items()}
    table["model"] = np.full(num_problems * num_samples, "d512-E8-k2", dtype=object)
    return pa.table(table)


def study_prefix_loop(table, ks: list[int]) -> dict[str, np.ndarray]:
    """The study's metrics: per problem, per k, the first k samples, in plain Python."""
    by_problem = defaultdict(list)
    for pid, idx, answer, correct, score in zip(*(table.column(c).to_pylist() for c in
                                                 ("problem_id", "sample_idx", "answer", "correct", "score"))):
        by_problem[pid].append((idx, answer, correct, score))
    from inference.ttc.estimators import STRATEGIES

    out = {s: [] for s in STRATEGIES}
    for samples in by_problem.values():
        samples.sort()
        answers = [s[1] for s in samples]
        corrects = [s[2] for s in samples]
        scores = [s[3] for s in samples]
        right = {a for a, c in zip(answers, corrects) if c and a is not None}
        row = {s: [] for s in out}
        for k in ks:
            row["pass"].append(float(any(corrects[:k])))
            valid = [(a, sc) for a, sc in zip(answers[:k], scores[:k]) if a is not None]
            if not valid:
                for s in ("majority", "best_of_n", "weighted_majority"):
                    row[s].append(0.0)
                continue
            top = Counter(a for a, _ in valid).most_common(1)[0][0]  # ties: first seen
            row["majority"].append(float(top in right))
            best = max(range(len(valid)), key=lambda i: (valid[i][1], -i))  # first of the highest
            row["best_of_n"].append(float(valid[best][0] in right))
            sums = defaultdict(float)
            for a, sc in valid:
                sums[a] += sc
            row["weighted_majority"].append(float(max(sums, key=sums.get) in right))  # dict order: first seen
        for s in out:
            out[s].append(row[s])
    return {s: np.array(v) for s, v in out.items()}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished workers (wall time depends on who shares the cores)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def main() -> None:
    from inference.ttc.aggregate import estimate_per_problem, summarize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1319)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="processes for the voting strategies")
    parser.add_argument("--out", type=Path, help="append this run's figures to a JSON-lines file")
    parser.add_argument("--series", default="issue-28", help="label of the runs this one belongs to (READMEs "
                        "select runs by it, e.g. the idle-core runs of one change)")
    args = parser.parse_args()
    load_at_start = round(os.getloadavg()[0], 2)
    ks = [2 ** i for i in range(args.samples.bit_length()) if 2 ** i <= args.samples]

    t = time.perf_counter()
    table = synthetic_samples(args.problems, args.samples)
    print(f"workload: {args.problems} problems x {args.samples} samples, k={ks} "
          f"(built in {time.perf_counter() - t:.1f} s)")

    t, cpu = time.perf_counter(), _cpu_seconds()
    estimates = estimate_per_problem(table, ks, workers=args.workers)
    rows = summarize(estimates, bootstrap=args.bootstrap)
    lab, lab_cpu = time.perf_counter() - t, _cpu_seconds() - cpu
    kinds = Counter(r["estimator"] for r in rows)
    print(f"lab (4 strategies, expectation over subsets, {args.bootstrap} bootstrap, "
          f"{args.workers} workers): {lab:.1f} s wall, {lab_cpu:.1f} s CPU; "
          f"estimators per point: {dict(kinds)}")

    t = time.perf_counter()
    prefix = estimate_per_problem(table, ks, estimator="prefix")
    summarize(prefix, bootstrap=args.bootstrap)
    lab_prefix = time.perf_counter() - t
    print(f"lab prefix mode (with bootstrap): {lab_prefix:.1f} s")

    t = time.perf_counter()
    study = study_prefix_loop(table, ks)
    study_time = time.perf_counter() - t
    print(f"study prefix loop (no CIs): {study_time:.1f} s")
    for strategy, values in study.items():
        assert np.array_equal(values, prefix[0].values[strategy]), f"prefix {strategy} differs from the study loop"
    print("lab prefix numbers == study loop numbers: yes")
    for strategy in ("majority", "weighted_majority"):
        exact = next(r for r in rows if r["strategy"] == strategy and r["k"] == 16)["accuracy"]
        print(f"{strategy}@16: expectation {exact:.4f} vs prefix {study[strategy][:, 4].mean():.4f}")
    print(f"lab (all strategies, expectations, CIs) vs study loop (prefix, no CIs): {lab:.1f} s vs "
          f"{study_time:.1f} s; target lab <= 10 s wall on 2 cores: {'met' if lab <= 10 else 'NOT met'} "
          f"({lab_cpu:.1f} s CPU, {lab_cpu / 2:.1f} s per core)")
    ratio = study_time / lab_prefix
    if args.out is not None:
        from core.provenance import provenance

        record = {"provenance": provenance(), "series": args.series, "date": time.strftime("%Y-%m-%d"),
                  "load_1m_at_start": load_at_start, "problems": args.problems,
                  "samples": args.samples, "ks": ks, "bootstrap": args.bootstrap, "workers": args.workers,
                  "lab_wall_s": round(lab, 2), "lab_cpu_s": round(lab_cpu, 2), "estimators": dict(kinds),
                  "lab_prefix_wall_s": round(lab_prefix, 2), "study_loop_wall_s": round(study_time, 2),
                  "ratio": round(ratio, 2)}
        with args.out.open("a") as out:
            out.write(json.dumps(record) + "\n")
    print(f"ratio: {ratio:.2f}  (study loop / lab prefix mode, same prefix metrics)")

if __name__ == "__main__":
    main()
