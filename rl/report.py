"""Before -> after held-out greedy accuracy of a GRPO run, with a paired bootstrap 95% CI of the change.

Why paired: the greedy eval (`rl.callbacks.GreedyEvalCallback`) scores the *same* problems at every
eval step and writes every verdict to `eval_samples.jsonl`. Problem difficulty then cancels in the
per-problem difference (after - before, each -1, 0 or +1), so the interval reflects only the
problems the run fixed or broke; two unpaired binomial intervals would be several times wider and
hide real changes. "Significant" here means the CI of the change excludes 0.

    python -m rl.report outputs/grpo/toy-d64-E8-k2            # every eval set: first vs last step
    python -m rl.report RUN_DIR --before 0 --after 40          # chosen steps

`rl.train` calls `eval_changes` at the end of a run and stores the result in `summary.json`
(`eval_change`), so every run records its own before/after verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from core.errors import UserError, exit_status

SAMPLES_FILE = "eval_samples.jsonl"


def read_verdicts(path: str | Path) -> dict[str, dict[int, dict[str, bool]]]:
    """dataset -> step -> problem id -> correct, from an `eval_samples.jsonl` (later lines win, so a
    step evaluated twice, e.g. on resume, keeps its newest verdicts)."""
    verdicts: dict[str, dict[int, dict[str, bool]]] = {}
    with Path(path).open() as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                verdicts.setdefault(str(row["dataset"]), {}).setdefault(int(row["step"]), {})[str(row["id"])] = \
                    bool(row["correct"])
            except (ValueError, KeyError, TypeError) as err:
                raise UserError(f"{path}:{number}: not an eval sample row (step, dataset, id, correct): "
                                f"{err}") from None
    return verdicts


def paired_change(before: dict[str, bool], after: dict[str, bool], resamples: int = 10000, seed: int = 0,
                  level: float = 0.95) -> dict:
    """Accuracy before and after on the problems both evaluated, and the percentile-bootstrap CI of
    the mean per-problem difference (problems resampled with replacement, the same draw for both)."""
    from core.stats import bootstrap_ci

    shared = sorted(set(before) & set(after))
    if not shared:
        raise UserError("no problem was evaluated at both steps: nothing to pair")
    b = np.array([before[p] for p in shared], dtype=float)
    a = np.array([after[p] for p in shared], dtype=float)
    diff, low, high = bootstrap_ci(a - b, resamples, seed, level)
    return {"num_problems": len(shared), "before": float(b.mean()), "after": float(a.mean()),
            "change": float(diff[0]), "ci_low": float(low[0]), "ci_high": float(high[0]), "level": level,
            "fixed": int(((a == 1) & (b == 0)).sum()), "broken": int(((a == 0) & (b == 1)).sum()),
            "significant": bool(low[0] > 0 or high[0] < 0)}


def eval_changes(run_dir: str | Path, before_step: int | None = None, after_step: int | None = None,
                 resamples: int = 10000, seed: int = 0) -> dict[str, dict]:
    """Per eval dataset of a run: `paired_change` between two eval steps (default: first and last)."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: the run has no greedy eval (set eval.datasets in the recipe)")
    results = {}
    for dataset, steps in read_verdicts(path).items():
        first = min(steps) if before_step is None else before_step
        last = max(steps) if after_step is None else after_step
        missing = [s for s in (first, last) if s not in steps]
        if missing:
            raise UserError(f"{path}: dataset {dataset} has no eval at step {missing[0]} (steps: "
                            f"{', '.join(map(str, sorted(steps)))})")
        results[dataset] = {"before_step": first, "after_step": last,
                            **paired_change(steps[first], steps[last], resamples, seed)}
    return results


def describe(dataset: str, change: dict) -> str:
    """One line: greedy accuracy before -> after (with their steps), the change and its CI, the problems
    fixed and broken, and whether the CI excludes 0."""
    return (f"{dataset}: greedy accuracy {change['before']:.3f} (step {change['before_step']}) -> "
            f"{change['after']:.3f} (step {change['after_step']}), change {change['change']:+.3f} "
            f"[{change['level']:.0%} paired bootstrap CI {change['ci_low']:+.3f}, {change['ci_high']:+.3f}] on "
            f"{change['num_problems']} problems ({change['fixed']} fixed, {change['broken']} broken)"
            f"{_verdict(change)}")


def _verdict(change: dict) -> str:
    if not change["significant"]:
        return ": CI includes 0"
    return ": significant rise" if change["ci_low"] > 0 else ": significant drop"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rl.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a GRPO output_dir holding eval_samples.jsonl")
    parser.add_argument("--before", type=int, default=None, help="eval step to compare from (default: first)")
    parser.add_argument("--after", type=int, default=None, help="eval step to compare to (default: last)")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    def job() -> int:
        changes = eval_changes(args.run_dir, args.before, args.after, args.resamples, args.seed)
        if args.json:
            print(json.dumps(changes, indent=2))
        else:
            for dataset, change in changes.items():
                print(describe(dataset, change))
        return 0

    return exit_status(job)


if __name__ == "__main__":
    sys.exit(main())
