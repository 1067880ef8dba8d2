"""Neighbouring tools' formats: `moelab score` output is `moelab aggregate` input; lm-eval samples and
verl/open-r1 reward-labelled rows aggregate (inference/ttc/formats.py)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def moelab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moelab.cli", *args], capture_output=True, text=True, cwd=ROOT)


def metrics(path: Path) -> dict:
    with path.open() as handle:
        return {(r["strategy"], int(r["k"])): float(r["accuracy"]) for r in csv.DictReader(handle)}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_score_output_is_aggregate_input(tmp_path):
    rows = [{"problem_id": p, "gold": gold, "completion": f"The answer is {answer}"}
            for p, gold, answers in [("a", "18", ["18", "18", "17"]), ("b", "5", ["4", "5", "4"])]
            for answer in answers]
    scored = tmp_path / "scored.jsonl"
    result = moelab("score", "--task", "gsm8k", "--in", str(write_jsonl(tmp_path / "in.jsonl", rows)),
                    "--out", str(scored))
    assert result.returncode == 0, result.stderr
    first = json.loads(scored.read_text().splitlines()[0])
    assert {"answer", "correct", "sample_idx", "problem_id", "rule"} <= set(first)
    result = moelab("aggregate", str(scored), "--out", str(tmp_path / "m.csv"), "--bootstrap", "0")
    assert result.returncode == 0, result.stderr
    values = metrics(tmp_path / "m.csv")
    assert values[("pass", 1)] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert values[("majority", 3)] == pytest.approx(0.5)  # a: 18 wins (correct); b: 4 wins (wrong)


def lm_eval_line(doc_id: int, filt: str, responses: list[str], target: str, correct: float) -> dict:
    """A line as lm-eval 0.4 writes it with --log_samples (fields the aggregation reads, and others)."""
    return {"doc_id": doc_id, "doc": {"question": "q"}, "target": target, "arguments": {},
            "resps": [responses], "filtered_resps": [r.split("#### ")[-1] for r in responses], "filter": filt,
            "metrics": ["exact_match"], "doc_hash": "x", "exact_match": correct}


@pytest.mark.slow
def test_lm_eval_samples_aggregate_to_lm_evals_own_pass_at_1(tmp_path):
    lines = []
    for doc, (strict, flexible) in enumerate([(1.0, 1.0), (0.0, 1.0), (0.0, 0.0), (1.0, 1.0)]):
        lines.append(lm_eval_line(doc, "strict-match", [f"... #### {doc}"], f"x\n#### {doc}", strict))
        lines.append(lm_eval_line(doc, "flexible-extract", [f"... #### {doc}"], f"x\n#### {doc}", flexible))
    path = write_jsonl(tmp_path / "samples_gsm8k_2026.jsonl", lines)
    for filt, expected in (("strict-match", 0.5), ("flexible-extract", 0.75)):
        result = moelab("aggregate", str(path), "--out", str(tmp_path / f"{filt}.csv"), "--bootstrap", "0",
                        "--strategies", "pass", "--filter", filt)
        assert result.returncode == 0, result.stderr
        assert metrics(tmp_path / f"{filt}.csv")[("pass", 1)] == expected  # lm-eval's mean of exact_match


@pytest.mark.slow
def test_lm_eval_repeats_are_rescored_per_response_with_the_chosen_rule(tmp_path):
    lines = [lm_eval_line(0, "strict-match", ["#### 18", "#### 17", "#### 18"], "x\n#### 18", 1.0),
             lm_eval_line(1, "strict-match", ["#### 4", "The answer is 5", "#### 4"], "x\n#### 5", 0.0)]
    path = write_jsonl(tmp_path / "samples_gsm8k_2026.jsonl", lines)
    result = moelab("aggregate", str(path), "--out", str(tmp_path / "m.csv"), "--bootstrap", "0")
    assert result.returncode != 0 and "--rule" in result.stderr  # lm-eval's per-doc metric is not per sample
    result = moelab("aggregate", str(path), "--out", str(tmp_path / "m.csv"), "--bootstrap", "0", "--rule", "lab",
                    "--task", "gsm8k")
    assert result.returncode == 0, result.stderr
    values = metrics(tmp_path / "m.csv")
    assert values[("pass", 1)] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert values[("pass", 3)] == 1.0 and values[("majority", 3)] == 0.5


def test_reward_labelled_rows_aggregate(tmp_path):
    rows = [{"prompt": "p1", "completion": "a", "reward": 1.0}, {"prompt": "p1", "completion": "b", "reward": 0.0},
            {"prompt": "p2", "completion": "c", "reward": 0.0}, {"prompt": "p2", "completion": "d", "reward": 0.0}]
    path = write_jsonl(tmp_path / "verl.jsonl", rows)
    result = moelab("aggregate", str(path), "--out", str(tmp_path / "m.csv"), "--bootstrap", "0",
                    "--strategies", "pass")
    assert result.returncode == 0, result.stderr
    values = metrics(tmp_path / "m.csv")
    assert values[("pass", 1)] == 0.25 and values[("pass", 2)] == 0.5
