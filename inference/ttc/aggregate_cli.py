"""`moelab aggregate`: scored samples -> tidy metrics CSV (accuracy at k with bootstrap CIs, compute axes).

Cheap to import: numpy and pyarrow load inside `run`, and so do the strategy names
(`inference.ttc.estimators.STRATEGIES` sits beside numpy code), so the `--strategies` help cannot list
them; an unknown name does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import UserError


def parse_int_list(text: str | None, what: str) -> list[int] | None:
    """'1,2,4' -> [1, 2, 4]; UserError naming the option on anything else."""
    if not text:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{what}: values must be positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", help="scored samples: JSONL file, parquet file, or directory of shards "
                                        "(columns problem_id, sample_idx, answer, correct; optional model, score, "
                                        "mean_logprob, num_tokens)")
    parser.add_argument("--out", required=True, help="metrics CSV to write")
    parser.add_argument("--k", default=None, help="comma-separated sample budgets (default: powers of two up to N, "
                                                 "plus N)")
    parser.add_argument("--strategies", default=None,
                        help="comma-separated strategies (default: all the columns allow); an unknown name "
                             "lists the choices")
    parser.add_argument("--estimator", default="exact", choices=["exact", "prefix", "monte_carlo"],
                        help="exact: expectation over k-subsets (Monte Carlo where exact is intractable, recorded "
                             "in the estimator column); prefix: the study's first-k numbers; monte_carlo: force it")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples over problems (0: no CIs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of any Monte Carlo")
    parser.add_argument("--score-column", default=None,
                        help="numeric column for best_of_n / weighted_majority (default: score, else mean_logprob)")
    parser.add_argument("--format", default="auto", choices=["auto", "table", "lm-eval", "rewarded"],
                        help="input format (inference/ttc/formats.py): the lab's table, lm-eval --log_samples "
                             "lines, or verl/open-r1 reward-labelled rows; auto = from the first row")
    parser.add_argument("--rule", default=None, choices=["lab", "study", "study_grpo"],
                        help="lm-eval samples: re-score every response with this rule (needs --task); default: "
                             "lm-eval's own per-document metric (one response per document)")
    parser.add_argument("--task", default=None, choices=["gsm8k", "math", "toy"],
                        help="checker task for --rule")
    parser.add_argument("--filter", default=None, help="lm-eval samples: which filter's lines (default: the first)")
    parser.add_argument("--vote-weight", default="auto", choices=["auto", "exp", "sigmoid", "raw"],
                        help="weighted_majority's weight per sample, a monotone map of the score: auto = exp for "
                             "mean_logprob, other scores as they are when all are non-negative and through a sigmoid "
                             "when some are negative (every vote counts for its answer; metrics name the choice); "
                             "raw = the scores as they are (the study's sum)")
    parser.add_argument("--mc-draws", type=int, default=2000, help="random subsets per k where Monte Carlo is used")
    parser.add_argument("--paired", default=None, metavar="PAIRS.csv",
                        help="also write paired differences (strategy vs strategy per model, model vs model per "
                             "strategy on shared problems) with bootstrap CIs")
    parser.add_argument("--workers", type=int, default=1, help="processes for the voting strategies")


def run(args: argparse.Namespace) -> int:
    from inference.ttc.aggregate import PAIRED_COLUMNS, estimate_per_problem, paired_differences, summarize, write_csv
    from inference.ttc.estimators import STRATEGIES

    ks = parse_int_list(args.k, "--k")
    strategies = None
    if args.strategies:
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        unknown = [s for s in strategies if s not in STRATEGIES]
        if unknown:
            raise UserError(f"--strategies: unknown {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}")
    if args.mc_draws < 2000:
        raise UserError(f"--mc-draws: at least 2000 random subsets per k, got {args.mc_draws}")
    samples = args.samples
    if args.format != "table" and str(samples).endswith(".jsonl") and Path(samples).is_file():
        from inference.ttc.formats import read_jsonl_rows, to_scored_rows

        rows = read_jsonl_rows(samples)
        if args.format != "auto" or (rows and "problem_id" not in rows[0]):
            samples = to_scored_rows(rows, args.format, task=args.task, rule=args.rule, filter_name=args.filter,
                                     where=str(args.samples))
    estimates = estimate_per_problem(samples, ks, strategies, estimator=args.estimator,
                                     score_column=args.score_column, seed=args.seed, mc_draws=args.mc_draws,
                                     workers=max(1, args.workers), vote_weight=args.vote_weight)
    rows = summarize(estimates, args.bootstrap, args.seed)
    path = write_csv(rows, args.out)
    models = ", ".join(e.model for e in estimates)
    print(f"wrote {path}: {len(rows)} rows ({models}; {len(estimates[0].problem_ids)} problems)", file=sys.stderr)
    if args.paired:
        pairs = write_csv(paired_differences(estimates, args.bootstrap, args.seed), args.paired, PAIRED_COLUMNS)
        print(f"wrote {pairs}", file=sys.stderr)
    return 0
