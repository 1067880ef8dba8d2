"""The study's scoring rules (`rule=study`, `rule=study_grpo`) against the authors' own code's verdicts.

tests/data/study_verdicts.jsonl holds what the authors' released code (run outside the project by
tests/data/collect_study_verdicts.py) decided on the completions of tests/data/study_cases.jsonl;
the lab's rules are written from the rules' description (rewards/rules.py) and must agree on all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import UserError
from rewards import score_samples
from rewards.extract import final_boxed
from rewards.rules import resolve_rule, study_answer, tinygsm_program, verl_gold
from rewards.sandbox import run_code
from tasks.datasets import gsm8k_final_answer

DATA = Path(__file__).parent / "data"
CASES = [json.loads(line) for line in (DATA / "study_cases.jsonl").read_text().splitlines() if line.strip()]
VERDICTS = [json.loads(line) for line in (DATA / "study_verdicts.jsonl").read_text().splitlines() if line.strip()]


def test_recorded_verdicts_belong_to_the_current_cases():
    assert [(v["id"], v["completion"], v["solution"]) for v in VERDICTS] == \
        [(c["id"], c["completion"], c["solution"]) for c in CASES]
    assert {c["rule"] for c in CASES} == {"study", "study_grpo"}


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["study", "study_grpo"])
def test_the_lab_reproduces_the_authors_verdicts(rule):
    rows = [v for v in VERDICTS if v["rule"] == rule]
    mismatches = []
    for task in ("gsm8k", "math"):
        part = [v for v in rows if v["task"] == task]
        verdicts = score_samples(task, [v["solution"] for v in part], [v["completion"] for v in part], rule=rule)
        mismatches += [(v["id"], v["verdict"], got.status) for v, got in zip(part, verdicts)
                       if (got.status == "correct") != v["verdict"]]
        if rule == "study":  # the extracted strings too, which the study voted on
            mismatches += [(v["id"], v["answer"], got.pred) for v, got in zip(part, verdicts)
                           if got.pred != (None if v["answer"].startswith("[invalid") else v["answer"])]
    assert not mismatches
    assert len(rows) >= 20


def test_at_least_40_cases_separate_the_study_rules_from_the_lab_rule():
    separating = []
    for v in VERDICTS:
        bare = gsm8k_final_answer(v["solution"]) if v["task"] == "gsm8k" else final_boxed(v["solution"])
        lab = score_samples(v["task"], [bare], [v["completion"]], execute_code=True)[0]
        if (lab.status == "correct") != v["verdict"]:
            separating.append(v["id"])
    assert len(separating) >= 40, separating


def test_the_issues_examples_are_among_the_cases():
    by_text = {(c["completion"], c["rule"]): c for c in VERDICTS}
    assert by_text[("She has 5 apples.\nanswer: 5", "study")]["verdict"] is True
    assert by_text[("Half of 14 is 7.\nAnswer 7 apples", "study")]["answer"] == "7"
    assert by_text[("The answer is 1,234", "study")]["answer"] == "1"
    assert by_text[("She makes $18.\n#### $18", "study")]["verdict"] is False
    assert by_text[("The distance is $\\boxed{3}$.", "study_grpo")]["verdict"] is True  # gold 3\sqrt{2}
    assert by_text[("The solution set is $\\boxed{5}$.", "study_grpo")]["verdict"] is True  # gold (3, 5]


def test_study_votes_on_extracted_strings_and_unanswered_samples_never_vote():
    solution = "2 * 9 = <<2*9=18>>18\n#### 18"
    verdicts = score_samples("gsm8k", [solution] * 4, ["The answer is 18", "The answer is 18.0", "no idea",
                                                      "The answer is 17"], problem_ids=["p"] * 4, rule="study")
    assert [v.status for v in verdicts] == ["correct", "correct", "no_answer", "wrong"]
    assert [v.cluster for v in verdicts] == ["18", "18.0", None, "17"]  # the lab would merge 18 and 18.0
    lab = score_samples("gsm8k", ["18"] * 2, ["The answer is 18", "The answer is 18.0"], problem_ids=["p"] * 2)
    assert lab[0].cluster == lab[1].cluster


def test_bare_golds_read_as_the_study_would_read_their_solution():
    assert study_answer("gsm8k", "18", is_gold=True) == study_answer("gsm8k", "x\n#### 18", is_gold=True) == "18"
    assert study_answer("math", "\\frac12", is_gold=True) == study_answer("math", "so $\\boxed{\\frac12}$",
                                                                        is_gold=True) == "\\frac{1}{2}"
    assert verl_gold("gsm8k", "a\n#### 1,234") == "1234" and verl_gold("gsm8k", "72") == "72"
    assert verl_gold("math", "so $\\boxed{3\\sqrt{2}}$.") == "3\\sqrt{2}" == verl_gold("math", "3\\sqrt{2}")


def test_unknown_rule_is_one_line_naming_the_choices():
    with pytest.raises(UserError, match="lab, study, study_grpo"):
        score_samples("gsm8k", ["1"], ["1"], rule="paper")
    with pytest.raises(ValueError, match="expected one of"):
        resolve_rule("strict")


def test_missing_antlr411_runtime_is_one_line_naming_the_fix(monkeypatch, tmp_path):
    import rewards.pool as pool

    monkeypatch.setattr(pool, "ANTLR411_DIR", tmp_path / "absent")
    with pytest.raises(UserError, match="make install"):
        pool.antlr411_path()


def test_sandbox_runs_the_study_conventions():
    assert run_code("x = 3\nx * 6", convention="study_last_line").answer == "18"
    assert run_code("x = 3\nprint(x)", convention="study_last_line").answer == "None"  # not a failure
    assert run_code("x = 18", convention="study_last_line").status == "failed"  # `x = 18` cannot be eval'd
    program = tinygsm_program("Code:\ndef simple_math_problem():\n    return 9 * 2\n")
    assert run_code(program, convention="study_function").answer == "18"
    assert tinygsm_program("def simple_math_problem():\n    return 1").startswith("defdef")  # the study's quirk
    assert run_code("import os\nos.system('true')\n1", convention="study_last_line").status == "failed"
