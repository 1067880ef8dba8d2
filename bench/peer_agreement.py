"""The lab's `math` verdicts on math-verify's own test cases: how many agree, and which do not.

    python bench/peer_agreement.py [--out docs/results/math-verify-peer-agreement.json] [--lab-root DIR]

Reads `tests/data/math_verify_cases.jsonl` (the peer suite's (gold, prediction, expected) facts),
scores every case with the lab's scorer (gold as given, prediction as the completion) and writes
the counts and each disagreement; likewise for the lab's probes (`tests/data/scorer_probes.jsonl`).
`--lab-root` scores with another checkout's `rewards` package
(e.g. an older commit, to measure a change against the same cases). Not a speed benchmark: its last
line is the agreement on the LaTeX cases.

The file records its `provenance` (command, commit, date) and its `settings`: what makes the
experiment (the scoring checkout, the antlr4 runtime and math-verify versions it ran with). A run with
other settings refuses to replace a file that records different ones (the antlr4-4.11 run once
replaced the main file this way, and two READMEs quoted numbers it no longer held): give it its
own `--out`, e.g. `docs/results/math-verify-peer-agreement-antlr4.11.json`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "data" / "math_verify_cases.jsonl"
PROBES = ROOT / "tests" / "data" / "scorer_probes.jsonl"  # the lab's own probes, with the right verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "math-verify-peer-agreement.json")
    parser.add_argument("--lab-root", type=Path, default=ROOT, help="checkout whose rewards package scores")
    args = parser.parse_args()
    from core.provenance import provenance, refuse_other_experiment  # this checkout's, before --lab-root's

    sys.path.insert(0, str(args.lab_root.resolve()))
    from rewards import Scorer

    settings = experiment_settings(args.lab_root)
    refuse_other_experiment(args.out, settings)
    record = provenance()

    cases = [json.loads(line) for line in CASES.read_text().splitlines()]
    probes = [json.loads(line) for line in PROBES.read_text().splitlines()]
    with Scorer(num_workers=2, deadline_s=5) as scorer:
        verdicts = scorer.score("math", [c["gold"] for c in cases], [c["pred"] for c in cases],
                                list(range(len(cases))))
        probe_verdicts = scorer.score("math", [p["gold"] for p in probes], [p["completion"] for p in probes],
                                      list(range(len(probes))))
    failed_probes = [{"name": p["name"], "right": p["verdict"], "lab": v.status}
                     for p, v in zip(probes, probe_verdicts) if v.status != p["verdict"]]
    disagreements = []
    for line, (case, verdict) in enumerate(zip(cases, verdicts), 1):
        if int(verdict.status == "correct") != case["expected"]:
            disagreements.append({"line": line, "test": case["test"], "gold": case["gold"],
                                  "pred": case["pred"][-300:],
                                  "expected": case["expected"], "lab": verdict.status,
                                  "settings": {k: case[k] for k in ("match_types", "precision", "strict",
                                                                     "allow_set_relation_comp")}})
    latex = [line for line, case in enumerate(cases, 1) if case["match_types"] != ["expr"]]
    wrong_latex = sum(d["line"] in set(latex) for d in disagreements)
    commit = subprocess.run(["git", "-C", str(args.lab_root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    result = {"provenance": record, "settings": settings,
              "lab_commit": commit, "peer_commit": cases[0]["source_commit"], "cases": len(cases),
              "agree": len(cases) - len(disagreements), "latex_cases": len(latex),
              "latex_agree": len(latex) - wrong_latex,
              "false_accepts": sum(d["lab"] == "correct" for d in disagreements),
              "probes": len(probes), "probes_failed": len(failed_probes),
              "probes_wrong_answer_accepted": sum(p["lab"] == "correct" for p in failed_probes),
              "failed_probes": failed_probes, "disagreements": disagreements}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"all cases: {result['agree']}/{len(cases)} agree; lab accepts {result['false_accepts']} the peer rejects")
    print(f"probes: {len(failed_probes)}/{len(probes)} fail, {result['probes_wrong_answer_accepted']} of them "
          "accepting a wrong answer")
    print(f"latex cases: {result['latex_agree']}/{len(latex)} agree")


def experiment_settings(lab_root: Path) -> dict[str, str]:
    """What makes this experiment, as opposed to the code it measures: the checkout scoring (this one,
    or another named by `--lab-root`) and the versions of the libraries the verdicts depend on (the
    workers inherit this process's environment, PYTHONPATH included, so they see the same antlr4)."""
    lab = "." if lab_root.resolve() == ROOT else str(lab_root)
    return {"lab_root": lab, "antlr4": importlib.metadata.version("antlr4-python3-runtime"),
            "math_verify": importlib.metadata.version("math-verify")}


if __name__ == "__main__":
    from core.errors import exit_status

    sys.exit(exit_status(main))
