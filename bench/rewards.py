"""Benchmark: the lab's scorer against the naive per-sample math-verify loop, on a sweep-like set.

    python bench/rewards.py [--problems 160] [--samples 64] [--naive-subset 600] [--seed 0] [--out RUNS.jsonl]

The set mimics a test-time sweep: GSM8K-style problems (chain of thought ending `#### N`,
`The answer is N.` or `\\boxed{N}`) and MATH-style problems (fractions, radicals, intervals,
sets, polynomials; answers boxed, in equivalent spellings), `--samples` completions per problem
drawn from a few distinct answers (the right one most often, some wrong ones, some no answer).

Naive loop = what TRL's `accuracy_reward` does per sample: `parse(gold)`, `parse(completion)`,
`verify(gold, pred)`, in-process, main thread, math-verify's default timeouts (with math-verify's
default extraction configs rather than TRL's LaTeX-only one, so that `#### N` answers are read,
as the study's reward did with `parse(response)`). It is slow, so it runs on a stratified random
subset and its rate is extrapolated; verdicts (correct vs not) are compared on that subset.
The lab's scorer runs the whole set on a started worker pool (its start-up, which includes judging a
dozen common answer shapes unlike the set's, is printed separately and not counted in the rate; the naive loop judges the same dozen before its
timing starts). Every
run is cold: nothing is cached across runs, and the workers have judged none of the set's pairs. CPU
seconds are printed beside wall seconds (the lab's: this process plus its workers), since the cores
may be shared. Last line: `ratio: <lab samples/s / naive samples/s>`. `--out` appends the run's figures
and provenance (command, commit, date, load average) as one JSON line (the README quotes
`docs/results/bench-rewards.jsonl`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from math import gcd
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))



def math_answers(rng: random.Random, index: int) -> tuple[str, list[str], list[str]]:
    """(gold as in the dataset, equivalent spellings, wrong answers), fresh numbers per problem."""
    a, b = rng.randint(2, 9), rng.choice([2, 3, 5, 6, 7, 10, 11])
    kind = index % 8
    if kind == 0:
        q = rng.choice([4, 8, 20, 25, 40])
        p = rng.choice([n for n in range(1, q) if gcd(n, q) == 1])
        return f"\\frac{{{p}}}{{{q}}}", [f"\\frac{{{p}}}{{{q}}}", f"\\dfrac{{{p}}}{{{q}}}", str(p / q)], \
            [f"\\frac{{{p + 1}}}{{{q}}}", f"\\frac{{{p}}}{{{q + 1}}}", str(q)]
    if kind == 1:
        return f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"], \
            [f"{a + 1}\\sqrt{{{b}}}", f"\\sqrt{{{a * b}}}", str(a * b)]
    if kind == 2:
        gold = f"\\frac{{\\sqrt{{{b}}}}}{{{b}}}"
        return gold, [gold, f"\\frac{{1}}{{\\sqrt{{{b}}}}}"], \
            [f"\\sqrt{{{b}}}", f"\\frac{{1}}{{{b}}}", "1"]
    if kind == 3:
        return (f"({a}, {a + b}]", [f"({a}, {a + b}]", f"({a},{a + b}]"],
                [f"[{a}, {a + b}]", f"({a}, {a + b})", f"(0, {a + b}]"])
    if kind == 4:
        return f"\\{{{a}, {a + b}\\}}", [f"\\{{{a}, {a + b}\\}}", f"\\{{{a + b}, {a}\\}}"], \
            [f"\\{{{a}\\}}", f"\\{{{a}, {a + b + 1}\\}}", str(a)]
    if kind == 5:
        return f"x^2 + {2 * a}x + {a * a}", [f"x^2 + {2 * a}x + {a * a}", f"(x+{a})^2"], \
            [f"x^2 + {a * a}", f"(x-{a})^2", f"x^2 + {a}x + {a * a}"]
    if kind == 6:
        degrees = 10 * a + b
        return (f"{degrees}^\\circ", [f"{degrees}^\\circ", str(degrees)],
                [f"{degrees + 30}^\\circ", str(180 - degrees), str(2 * degrees)])
    return f"\\frac{{{a}\\pi}}{{{b}}}", [f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}\\pi"], \
        [f"\\frac{{{a + 1}\\pi}}{{{b}}}", f"{a}\\pi", f"\\frac{{\\pi}}{{{b}}}"]


def gsm8k_problem(rng: random.Random, index: int, samples: int) -> list[tuple[str, str, str]]:
    a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 9)
    answer = (a + b) * c
    gold = f"She buys {a} + {b} = {a + b} boxes, so {a + b} * {c} = <<{a + b}*{c}={answer}>>{answer}.\n#### {answer}"
    wrong = [answer + c, a * b * c, answer - a]
    rows = []
    for _ in range(samples):
        roll = rng.random()
        value = answer if roll < 0.55 else rng.choice(wrong) if roll < 0.93 else None
        steps = f"She has {a} and buys {b} more, so {a} + {b} = {a + b}. Each costs {c}, so the total is "
        if value is None:
            text = "I am not sure how to solve this one."
        else:
            style = rng.randrange(4)
            shown = f"{value:,}" if value >= 1000 and rng.random() < 0.5 else str(value)
            text = [f"{steps}{shown}.\n#### {shown}", f"{steps}{shown}. The answer is {shown}.",
                    f"{steps}$\\boxed{{{shown}}}$.", f"{steps}{shown} dollars.\n#### {shown}"][style]
        rows.append((f"gsm8k-{index}", gold, text))
    return rows


def math_problem(rng: random.Random, index: int, samples: int) -> list[tuple[str, str, str]]:
    gold, right, wrong = math_answers(rng, index)
    solution = f"Working through the algebra we find the answer is $\\boxed{{{gold}}}$."
    rows = []
    for _ in range(samples):
        roll = rng.random()
        if roll < 0.5:
            answer = rng.choice(right)
        elif roll < 0.93:
            answer = rng.choice(wrong)
        else:
            rows.append((f"math-{index}", solution, "Let me think about the cases. This is hard to finish."))
            continue
        text = (f"We substitute $y = 2$ and simplify the expression step by step. "
                f"Collecting terms, the result is $\\boxed{{{answer}}}$.")
        rows.append((f"math-{index}", solution, text))
    return rows


def worker_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the given (live) processes have used so far (Linux /proc; NaN elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def naive_loop(golds: list[str], completions: list[str]) -> list[bool]:
    from math_verify import parse, verify

    return [bool(verify(parse(gold), parse(completion))) for gold, completion in zip(golds, completions)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=160, help="problems per style (GSM8K-style and MATH-style)")
    parser.add_argument("--samples", type=int, default=64, help="completions per problem")
    parser.add_argument("--naive-subset", type=int, default=600, help="samples the naive loop is timed on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="append this run's figures to a JSON-lines file")
    parser.add_argument("--series", default="issue-28", help="label of the runs this one belongs to (READMEs "
                        "select runs by it, e.g. the idle-core runs of one change)")
    args = parser.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    load_at_start = round(os.getloadavg()[0], 2)
    rng = random.Random(args.seed)
    rows = []
    for index in range(args.problems):
        rows += gsm8k_problem(rng, index, args.samples)
        rows += math_problem(rng, index, args.samples)
    ids, golds, completions = map(list, zip(*rows))
    tasks = ["gsm8k" if i.startswith("gsm8k") else "math" for i in ids]
    print(f"set: {len(rows)} completions, {2 * args.problems} problems x {args.samples} samples "
          f"({tasks.count('gsm8k')} GSM8K-style, {tasks.count('math')} MATH-style)")

    from rewards import Scorer

    start = time.perf_counter()
    with Scorer() as scorer:
        scorer.score("math", ["\\sqrt{2}"] * 2, ["\\boxed{\\sqrt{2}}", "\\boxed{\\sqrt{3}}"])  # start the workers
        startup_seconds = time.perf_counter() - start
        print(f"lab: worker pool start-up {startup_seconds:.2f} s ({scorer.num_workers} workers), "
              "not counted in the rate")
        pids = [worker.process.pid for worker in scorer.pool._free]
        start, cpu = time.perf_counter(), time.process_time() + worker_cpu_seconds(pids)
        verdicts: list = []
        for task in ("gsm8k", "math"):
            index = [i for i, t in enumerate(tasks) if t == task]
            verdicts += list(zip(index, scorer.score(task, [golds[i] for i in index], [completions[i] for i in index],
                                                     [ids[i] for i in index])))
        lab_seconds = time.perf_counter() - start
        lab_cpu = time.process_time() + worker_cpu_seconds(pids) - cpu
    lab_correct = dict((i, v.status == "correct") for i, v in verdicts)
    lab_rate = len(rows) / lab_seconds
    statuses = {}
    for _, verdict in verdicts:
        statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
    print(f"lab: {len(rows)} samples in {lab_seconds:.2f} s wall, {lab_cpu:.2f} s CPU = {lab_rate:,.0f} samples/s "
          f"({len(rows) / (lab_seconds + startup_seconds):,.0f} with start-up); statuses {statuses}")

    subset = sorted(random.Random(args.seed + 1).sample(range(len(rows)), min(args.naive_subset, len(rows))))
    from rewards.equivalence import WARM_UP_PAIRS

    naive_loop(*map(list, zip(*WARM_UP_PAIRS)))  # the workers' warm-up, outside the timing as theirs is
    start, cpu = time.perf_counter(), time.process_time()
    naive = naive_loop([golds[i] for i in subset], [completions[i] for i in subset])
    naive_seconds, naive_cpu = time.perf_counter() - start, time.process_time() - cpu
    naive_rate = len(subset) / naive_seconds
    print(f"naive (parse + verify per sample, in-process): {len(subset)} random samples in {naive_seconds:.2f} s "
          f"wall, {naive_cpu:.2f} s CPU = {naive_rate:,.1f} samples/s; extrapolated to the whole set: "
          f"{len(rows) / naive_rate:,.0f} s")
    differ = [i for i, ok in zip(subset, naive) if ok != lab_correct[i]]
    print(f"verdicts on the {len(subset)}-sample subset: {'identical' if not differ else f'{len(differ)} differ'} "
          f"(correct: lab {sum(lab_correct[i] for i in subset)}, naive {sum(naive)})")
    for i in differ[:5]:
        print(f"  differs: gold {golds[i][-40:]!r} completion {completions[i][-60:]!r} lab {lab_correct[i]}")
    if args.out is not None:
        from core.provenance import provenance

        record = {"provenance": provenance(), "series": args.series, "load_1m_at_start": load_at_start,
                  "completions": len(rows), "lab_samples_per_s": round(lab_rate, 1),
                  "lab_wall_s": round(lab_seconds, 3), "lab_cpu_s": round(lab_cpu, 3),
                  "startup_s": round(startup_seconds, 2), "naive_samples_per_s": round(naive_rate, 2),
                  "naive_wall_s": round(naive_seconds, 3), "naive_cpu_s": round(naive_cpu, 3),
                  "naive_subset": len(subset), "verdicts_differ": len(differ), "workers": scorer.num_workers,
                  "cache": "none (cold)", "cpu_ratio": round(len(rows) / lab_cpu / (len(subset) / naive_cpu), 1),
                  "ratio": round(lab_rate / naive_rate, 1), "date": time.strftime("%Y-%m-%d")}
        with args.out.open("a") as out:
            out.write(json.dumps(record) + "\n")
    print(f"ratio: {lab_rate / naive_rate:.1f}")


if __name__ == "__main__":
    main()
