"""Benchmark: what OS isolation costs per model program (bubblewrap against the plain child).

    python bench/sandbox.py [--repeats 30] [--out RUNS.jsonl]

Each program kind (plain arithmetic as TinyGSM writes it, a sympy `<llm-code>` block, a numpy one) runs
`--repeats` times through `rewards.sandbox.run_code` under each isolation mode (`bwrap`: namespaces +
seccomp + guard; `none`: seccomp + guard; `guard`: the in-process guard alone, which is what the
sandbox was before issue #26), interleaved so that machine noise falls on every mode alike. Prints the
median milliseconds per program for each (kind, mode). Last line: `ratio: <bwrap / guard median, plain
programs>`, the factor OS isolation costs on the cheapest program (the scorer runs each distinct
program once, so this is per distinct program, not per sample). `--out` appends the figures as one JSON
line (rewards/README.md quotes `docs/results/bench-sandbox.jsonl`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards.sandbox import bwrap_problem, run_code

PROGRAMS = {
    "plain": ("def simple_math_problem():\n    eggs = 16 - 3 - 4\n    result = eggs * 2\n    return result\n", "18"),
    "sympy": ("from sympy import symbols, solve, Rational\nx = symbols('x')\nsol = solve(3*x - Rational(36, 2), x)\n"
              "sol[0]\n", "6"),
    "numpy": ("import numpy as np\nnp.linalg.solve([[2, 1], [1, 3]], [3, 5])[1]\n", "1.4"),
}
MODES = ("bwrap", "none", "guard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, help="append this run's figures to a JSON-lines file")
    args = parser.parse_args()
    if bwrap_problem():
        sys.exit(f"bench/sandbox.py measures bubblewrap, but {bwrap_problem()}")
    times: dict[tuple[str, str], list[float]] = {(kind, mode): [] for kind in PROGRAMS for mode in MODES}
    for _ in range(args.repeats):
        for kind, (code, answer) in PROGRAMS.items():
            for mode in MODES:
                start = time.perf_counter()
                result = run_code(code, isolation=mode)
                times[kind, mode].append(time.perf_counter() - start)
                if result.answer != answer:
                    sys.exit(f"{kind} under {mode}: expected {answer}, got {result}")
    medians = {f"{kind}/{mode}": round(1000 * statistics.median(values), 1) for (kind, mode), values in times.items()}
    for kind in PROGRAMS:
        print(f"{kind:6s} " + "  ".join(f"{mode} {medians[f'{kind}/{mode}']:7.1f} ms" for mode in MODES))
    ratio = medians["plain/bwrap"] / medians["plain/guard"]
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1]).stdout.strip()
        from core.provenance import provenance

        record = {"provenance": provenance(), "command": "python bench/sandbox.py " + " ".join(sys.argv[1:]),
                  "commit": commit,
                  "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                  "repeats": args.repeats, "median_ms": medians, "ratio": round(ratio, 2)}
        with args.out.open("a") as out:
            out.write(json.dumps(record) + "\n")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
