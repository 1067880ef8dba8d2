"""`moelab rule-audit`: how often each scoring rule accepts a dataset's own reference solutions.

    moelab rule-audit --dataset math500 --out docs/results/rule-audit-math500.json
    moelab rule-audit --dataset gsm8k --split test

A reference solution is right by construction, so a rule that rejects it measures the rule, not a
model: what fraction of a reward is extraction and parsing. Each solution is scored as a completion
against its own gold under `lab`, `study` and `study_grpo` (rewards/rules.py); the gold each rule gets
is the one it would have had (the lab's bare `gold` column; for the study's rules the raw solution,
from which they take their gold as the study did). Written: a JSON with the acceptance counts and
every problem where `study_grpo` and `lab` disagree, and a printed table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.files import atomic_write
from core.provenance import provenance, refuse_other_experiment

RULES_AUDITED = ("lab", "study", "study_grpo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="a dataset name (math500, gsm8k, math, ...) or a JSONL path")
    parser.add_argument("--split", default="test", help="split of the dataset (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")
    parser.add_argument("--out", default=None, metavar="PATH.json", help="where to write the audit (default: "
                        "outputs/rule-audit/<dataset>-<split>.json)")


def audit_rules(rows: list[dict]) -> dict:
    """Acceptance of each rule on the rows' own solutions, and the lab / study_grpo disagreements."""
    from rewards import score_samples

    by_task: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_task.setdefault(row["task"], []).append(i)
    verdicts: dict[str, list] = {rule: [None] * len(rows) for rule in RULES_AUDITED}
    for task, index in by_task.items():
        solutions = [rows[i]["solution"] for i in index]
        ids = [rows[i]["id"] for i in index]
        for rule in RULES_AUDITED:
            golds = [rows[i]["gold"] for i in index] if rule == "lab" else solutions
            for i, verdict in zip(index, score_samples(task, golds, solutions, problem_ids=ids, rule=rule)):
                verdicts[rule][i] = verdict
    accepted = {rule: sum(v.status == "correct" for v in verdicts[rule]) for rule in RULES_AUDITED}
    disagreements = [
        {"id": row["id"], "gold": row["gold"], "lab": verdicts["lab"][i].status, "lab_pred": verdicts["lab"][i].pred,
         "study_grpo": verdicts["study_grpo"][i].status, "study_grpo_pred": verdicts["study_grpo"][i].pred}
        for i, row in enumerate(rows)
        if (verdicts["lab"][i].status == "correct") != (verdicts["study_grpo"][i].status == "correct")]
    return {"num_problems": len(rows), "accepted": accepted, "disagreements_lab_vs_study_grpo": disagreements}


def run(args: argparse.Namespace) -> int:
    from tasks.datasets import load_problems

    settings = {"dataset": args.dataset, "split": args.split, "limit": args.limit}
    name = Path(args.dataset).stem if args.dataset.endswith(".jsonl") else args.dataset
    out = Path(args.out or f"outputs/rule-audit/{name}-{args.split}.json")
    refuse_other_experiment(out, settings)  # one file per dataset and split: never another's numbers
    rows = load_problems(args.dataset, split=args.split, limit=args.limit)
    result = {"provenance": provenance(), "settings": settings, "dataset": args.dataset, "split": args.split,
              "command": "moelab " + " ".join(sys.argv[1:]), **audit_rules(rows)}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda temp: Path(temp).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n"))
    total = result["num_problems"]
    print(f"reference solutions of {args.dataset} ({args.split}) accepted as correct, {total} problems:")
    print("| rule | accepted | fraction |\n|---|---|---|")
    for rule, count in result["accepted"].items():
        print(f"| {rule} | {count}/{total} | {count / max(1, total):.3f} |")
    print(f"lab and study_grpo disagree on {len(result['disagreements_lab_vs_study_grpo'])} problems; written to {out}")
    return 0
