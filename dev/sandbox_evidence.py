"""Run the sandbox's containment tests and write what they showed, per isolation mode, as evidence.

    .venv/bin/python dev/sandbox_evidence.py [--out docs/results/sandbox-isolation]

Runs `tests/test_sandbox_isolation.py`, `tests/test_rewards_hostile.py` and
`tests/test_sandbox_programs.py` under pytest (junit XML), and writes `<out>.json` (every test's outcome,
the command, commit, date, machine, bubblewrap version) and `<out>.md` (the table rewards/README.md
quotes): for each escape, whether its control did harm without a sandbox and whether it was contained
under `bwrap`, `none` and `guard`; how many hostile programs were held and legitimate programs kept their
answers per mode. Exit status 1 if any test failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("tests/test_sandbox_isolation.py", "tests/test_rewards_hostile.py", "tests/test_sandbox_programs.py")
MODES = ("bwrap", "none", "guard")


def run_tests() -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                        *FILES], cwd=REPO, check=False)
        root = ElementTree.parse(report).getroot()
    cases = []
    for case in root.iter("testcase"):
        outcome, reason = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome, reason = ("skipped" if tag == "skipped" else "failed"), found.get("message", "")
        cases.append({"test": case.get("name"), "file": case.get("classname"), "outcome": outcome,
                      "reason": reason[:300]})
    return cases


def _legitimate_programs() -> int:
    """How many programs the legitimate-program battery holds (one test runs them all)."""
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from test_sandbox_programs import PROGRAMS

    return len(PROGRAMS)


def summarize(cases: list[dict]) -> tuple[dict, list[str]]:
    escapes: dict[str, dict] = {}
    by_mode: dict[str, Counter] = {mode: Counter() for mode in MODES}
    for case in cases:
        match = re.fullmatch(r"(\w+)\[(.*)\]", case["test"])
        test, params = (match.group(1), match.group(2)) if match else (case["test"], "")
        if test == "test_each_escape_does_harm_without_a_sandbox":
            escapes.setdefault(params, {})["control"] = case["outcome"]
        elif test == "test_each_escape_is_contained":
            mode, name = params.split("-", 1)
            escapes.setdefault(name, {})[mode] = case["outcome"]
        elif test in ("test_hostile_code_is_contained", "test_answers_that_are_not_the_gold_never_score_correct"):
            by_mode[params.split("-", 1)[0]][f"hostile programs {case['outcome']}"] += 1
        elif test == "test_legitimate_programs_keep_their_answers":
            by_mode[params][f"legitimate programs {case['outcome']}"] += _legitimate_programs()
        elif params in MODES:  # the other per-mode checks: gold theft, crash, GRPO reward, the guard, namespaces
            by_mode[params][f"{test.removeprefix('test_').replace('_', ' ')}: {case['outcome']}"] += 1
    words = {"passed": "contained", "failed": "GOT THROUGH", "skipped": "not held (skip reason)"}
    lines = ["| escape | without a sandbox | " + " | ".join(MODES) + " |", "|---|---|" + "---|" * len(MODES)]
    for name, outcome in escapes.items():
        control = {"passed": "harm done", "failed": "no harm (probe broken)", "skipped": "not shown here"}
        lines.append(f"| {name} | {control.get(outcome.get('control', ''), '?')} | "
                     + " | ".join(words.get(outcome.get(mode, ""), "?") for mode in MODES) + " |")
    summary = {"escapes": len(escapes),
               "contained": {mode: sum(o.get(mode) == "passed" for o in escapes.values()) for mode in MODES},
               "controls_with_harm": sum(o.get("control") == "passed" for o in escapes.values()),
               "per_mode": {mode: dict(counts) for mode, counts in by_mode.items()},
               "failed": sum(case["outcome"] == "failed" for case in cases), "tests": len(cases)}
    return summary, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results/sandbox-isolation")
    args = parser.parse_args()
    cases = run_tests()
    summary, table = summarize(cases)
    bwrap = shutil.which("bwrap")
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip() if bwrap else None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    from core.provenance import provenance

    record = {"provenance": provenance(), "command": "python dev/sandbox_evidence.py " + " ".join(sys.argv[1:]),
              "commit": commit,
              "date": time.strftime("%Y-%m-%d"), "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
              "bwrap": version, "summary": summary, "cases": cases}
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    contained = ", ".join(f"{mode} {count}/{summary['escapes']}" for mode, count in summary["contained"].items())
    per_mode = "\n".join(f"- {mode}: " + ", ".join(f"{key}: {value}" for key, value in sorted(counts.items()))
                         for mode, counts in summary["per_mode"].items())
    out.with_suffix(".md").write_text(
        f"# Sandbox containment ({record['date']}, commit {commit}, {record['machine']}, {version})\n\n"
        f"Written by `{record['command']}` from {summary['tests']} tests ({summary['failed']} failed).\n\n"
        f"Escapes contained: {contained}; controls that did harm without a sandbox: "
        f"{summary['controls_with_harm']}/{summary['escapes']}.\n\n" + "\n".join(table) + "\n\n" + per_mode + "\n")
    print(out.with_suffix(".md").read_text())
    sys.exit(1 if summary["failed"] else 0)


if __name__ == "__main__":
    main()
