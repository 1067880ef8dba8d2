"""Rewards: extraction formats, equivalence, every status, clusters, TRL contract, CLI bad rows.

One scorer (two checker processes) is shared by the module; hostile inputs, threads and DataLoader
workers are in test_rewards_hostile.py.
"""

import argparse
import json
from fractions import Fraction

import pytest

from core.errors import UserError
from rewards import Scorer, get_reward_funcs
from rewards.audit import is_equiv, second_opinion
from rewards.extract import canonical_number, extract_answer, extract_gold, find_code, last_boxed, parse_number


@pytest.fixture(scope="module")
def scorer():
    with Scorer(num_workers=2, deadline_s=5) as shared:
        yield shared


# ------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize("completion, expected", [
    ("She has 16 - 3 = 13 eggs.\n#### 13", "13"),
    ("The answer is 1,234.", "1234"),
    ("Answer: $18 per day", "18"),
    ("Q: how many?\nA: 42 apples", "42"),
    ("so the total is \\boxed{\\$1,200}", "1200"),
    ("He pays $1,234.50 in total.", "1234.50"),
    ("It drops to -5 degrees.\n#### -5", "-5"),
    ("First 3 then 7 so 10 cookies", "10"),  # flexible: last number
    ("#### 18\n\nQuestion: next one 99", "18"),  # the first `####` wins over later numbers
])
def test_gsm8k_extraction_formats(completion, expected):
    assert extract_answer("gsm8k", completion).pred == expected
    assert extract_answer("toy", completion).pred == expected


def test_gsm8k_strict_is_the_studys_first_match_rule():
    assert extract_answer("gsm8k", "Answer: 5 apples. #### 7", strict=True).pred == "5"
    assert extract_answer("gsm8k", "The answer is 12", strict=True).pred == "12"
    assert extract_answer("gsm8k", "so 16 - 9 = 7 eggs", strict=True).pred is None  # flexible would say 7
    assert extract_answer("gsm8k", "\\boxed{7}", strict=True).pred is None


@pytest.mark.parametrize("completion, expected", [
    ("so $x = \\boxed{\\frac{1}{2}}$ and finally \\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}"),
    ("\\fbox{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{\\left( 1, 2 \\right]}", "( 1, 2 ]"),
    ("Final Answer: The final answer is $\\sqrt{3}$. I hope it is correct.", "\\sqrt{3}"),
    ("Thus the final answer is $x^2+1$.", "x^2+1"),
    ("a truncated \\boxed{5} then \\boxed{\\frac{1}{", "5"),
])
def test_math_extraction_formats(completion, expected):
    assert extract_answer("math", completion).pred == expected


def test_math_without_a_marker_hands_the_tail_to_math_verify():
    found = extract_answer("math", "x" * 5000 + " so it is $7$")
    assert found.source == "text" and len(found.pred) == 2000 and found.pred.endswith("$7$")


def test_gold_raw_field_or_bare():
    assert extract_gold("Natalia sold 48/2 = 24 clips.\n#### 72") == "72"
    assert extract_gold("#### 1,080") == "1080"
    assert extract_gold("We get $\\boxed{\\frac{\\sqrt{2}}{2}}$.") == "\\frac{\\sqrt{2}}{2}"
    assert extract_gold(" 18 ") == "18"
    assert extract_gold("1,2") == "1,2"  # a tuple, not one thousand and two hundred


def test_find_code_conventions():
    code = "def simple_math_problem():\n    a = 3\n\n    return a * 2\nThe result is 6."
    assert find_code(code) == "def simple_math_problem():\n    a = 3\n\n    return a * 2"
    assert find_code("text <llm-code>\nx = 2\nx + 1\n</llm-code> out") == "x = 2\nx + 1"
    assert find_code("no code here, #### 5") is None
    with_import = "import math\n\ndef simple_math_problem() -> float:\n    return math.sqrt(16)\n\nprint(simple_math_problem())"
    assert find_code(with_import) == "import math\ndef simple_math_problem() -> float:\n    return math.sqrt(16)"


def test_numbers_and_boxes():
    assert parse_number("\\frac12") == parse_number("1/2") == parse_number("0.5") == Fraction(1, 2)
    assert parse_number("1,234") == 1234 and parse_number("1,2") is None and parse_number("x") is None
    assert canonical_number(Fraction(1, 2)) == "0.5" and canonical_number(Fraction(-5, 4)) == "-1.25"
    assert canonical_number(Fraction(1, 3)) == "1/3" and canonical_number(Fraction(8)) == "8"
    assert last_boxed("\\boxed{a{b}c}") == "a{b}c" and last_boxed("\\boxed 5$") == "5"


# ------------------------------------------------------------------------------ equivalence


@pytest.mark.parametrize("gold, pred, correct", [
    ("\\frac{1}{2}", "0.5", True),                           # fractions
    ("\\frac{1}{2}", "\\frac12", True),
    ("\\frac{1}{2}", "\\frac{2}{3}", False),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),  # radicals
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\sqrt{2}", "\\sqrt{3}", False),
    ("(1, 2]", "(1,2]", True),                               # intervals
    ("(1, 2]", "[1, 2]", False),
    ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}", True),                # sets
    ("\\{1, 2\\}", "\\{1, 3\\}", False),
    ("30^\\circ", "30", True),                               # degrees
    ("1,234", "1234", True),                                 # thousands separators
    ("x^2 + 2x + 1", "(x+1)^2", True),                       # symbolic forms
    ("2(x+1)", "2x+2", True),
    ("x^2+1", "x^2-1", False),
])
def test_math_equivalence(scorer, gold, pred, correct):
    verdict = scorer.score("math", [gold], [f"so \\boxed{{{pred}}}"])[0]
    assert verdict.status == ("correct" if correct else "wrong"), verdict


def test_gsm8k_numbers_take_the_exact_path(scorer):
    verdicts = scorer.score("gsm8k", ["#### 1,234", "#### 18", "#### 0.5"],
                            ["The answer is $1,234.00", "#### 17", "#### 1/2"])
    assert [v.status for v in verdicts] == ["correct", "wrong", "correct"]
    assert [v.reward for v in verdicts] == [1.0, 0.0, 1.0]


# ----------------------------------------------------------------------------------- statuses


def test_every_status(scorer):
    verdicts = scorer.score("gsm8k", ["#### 18", "#### 18", "#### 18", "#### 18", None],
                            ["#### 18", "#### 17", "I don't know.",
                             "def simple_math_problem():\n    while True:\n        pass\n", "#### 18"],
                            execute_code=True, deadline_s=5)
    assert [v.status for v in verdicts] == ["correct", "wrong", "no_answer", "timeout", "error"]
    assert verdicts[0].pred == "18" and verdicts[1].pred == "17" and verdicts[2].pred is None
    assert {v.status for v in scorer.score("math", ["\\boxed{}"], ["\\boxed{5}"])} == {"error"}  # gold unparseable


def test_code_answers_are_executed(scorer):
    code = ("Let me write code.\ndef simple_math_problem():\n    eggs = 16 - 3 - 4\n"
            "    result = eggs * 2\n    return result\n")
    llm = "<llm-code>\nprice = 2.5\nprice * 4\n</llm-code>"
    verdicts = scorer.score("gsm8k", ["#### 18", "#### 10", "#### 18"], [code, llm, code + "#### 5"],
                            execute_code=True)
    assert [v.status for v in verdicts] == ["correct", "correct", "correct"]
    assert scorer.score("gsm8k", ["#### 18"], [code])[0].status == "wrong"  # not executed: last number is 2
    with_import = "import math\ndef simple_math_problem():\n    return math.sqrt(16)\nprint(simple_math_problem())"
    assert scorer.score("gsm8k", ["#### 4"], [with_import], execute_code=True)[0].status == "correct"


def test_clusters_follow_equivalence_within_a_problem(scorer):
    answers = ["\\frac12", "0.5", "1/2", "\\sqrt2", "2^{1/2}", "x+1", "1+x", "", "3"]
    verdicts = scorer.score("math", ["\\frac{1}{3}"] * 9 + ["3"],
                            [f"\\boxed{{{a}}}" if a else "no idea" for a in answers] + ["\\boxed{0.5}"],
                            problem_ids=["p"] * 9 + ["q"])
    clusters = [v.cluster for v in verdicts]
    assert clusters[0] == clusters[1] == clusters[2] == "0.5"
    assert clusters[3] == clusters[4] == "\\sqrt2"  # named by the first-seen member
    assert clusters[5] == clusters[6] != clusters[3]
    assert clusters[7] is None and verdicts[7].status == "no_answer"
    assert clusters[8] == "3" and clusters[9] == "0.5"


def test_correct_answers_share_one_cluster(scorer):
    verdicts = scorer.score("math", ["\\frac{\\sqrt2}{2}"] * 3,
                            ["\\boxed{\\frac{1}{\\sqrt2}}", "\\boxed{\\frac{\\sqrt{2}}{2}}", "\\boxed{1}"])
    assert verdicts[0].cluster == verdicts[1].cluster != verdicts[2].cluster


def test_bad_arguments_are_user_errors(scorer):
    with pytest.raises(UserError):
        scorer.score("chess", ["1"], ["1"])
    with pytest.raises(UserError, match="checker task 'math500'.*tasks.datasets"):  # a dataset, not a checker task
        scorer.score("math500", ["1"], ["1"])
    with pytest.raises(UserError):
        scorer.score("gsm8k", ["1", "2"], ["1"])


# ------------------------------------------------------------------------------------ TRL


def test_trl_reward_functions():
    accuracy, fmt, overlong = get_reward_funcs(
        ["accuracy", "format", "soft_overlong_punishment"],
        {"soft_overlong_punishment": {"max_completion_len": 10, "soft_punish_cache": 4}})
    completions = [[{"role": "assistant", "content": "so \\boxed{\\frac{1}{3}}"}],
                   [{"role": "assistant", "content": "\\boxed{\\frac{1}{2}}"}], "#### 7"]
    rewards = accuracy(prompts=["p"] * 3, completions=completions, solution=["\\frac13", "\\frac13", "#### 7"])
    assert rewards == [1.0, 0.0, 1.0]
    assert accuracy(prompts=["p"], completions=["\\boxed{1}"], gold=["\\boxed{}"]) == [None]  # gold unparseable: skip
    assert fmt(prompts=["p"] * 3, completions=completions, solution=["1", "1", "#### 7"]) == [1.0, 1.0, 1.0]
    assert fmt(prompts=["p"], completions=["7"], task=["gsm8k"]) == [0.0]
    assert fmt(prompts=["p"], completions=["\\boxed{7}"], task=["math"]) == [1.0]
    # the column names checker tasks; a dataset name is mapped by tasks.datasets, the layer above
    with pytest.raises(UserError, match="reward column 'task': unknown checker task 'math500'"):
        fmt(prompts=["p"], completions=["\\boxed{7}"], task=["math500"])
    # without a task column (a TRL dataset built elsewhere) the gold's `####` decides: a bare number is MATH's
    assert fmt(prompts=["p"] * 2, completions=["#### 7"] * 2, gold=["#### 7", "7"]) == [1.0, 0.0]
    lengths = [[0] * 6, [0] * 8, [0] * 11]
    assert overlong(prompts=None, completions=["a"] * 3, completion_ids=lengths) == [0.0, -0.5, -1.0]
    with pytest.raises(UserError, match="unknown reward"):
        get_reward_funcs(["no_such_reward"])
    import pickle  # TRL's async rollout worker pickles reward functions

    assert pickle.loads(pickle.dumps(accuracy))(prompts=["p"], completions=["#### 7"], gold=["7"]) == [1.0]
    assert accuracy.__name__ == "accuracy_reward"  # TRL names the logged metric after it


def test_dotted_import_path():
    from rewards.trl_rewards import format_reward

    assert get_reward_funcs(["rewards.trl_rewards.format_reward"]) == [format_reward]


# ---------------------------------------------------------------------------------- audit


def test_audit_checker_is_independent():
    assert is_equiv("\\frac{1}{2}", "\\dfrac12") and is_equiv("\\frac12", "0.5") and is_equiv("30^\\circ", "30")
    assert not is_equiv("\\frac{\\sqrt2}{2}", "\\frac{1}{\\sqrt2}")  # math-verify's win: a known false negative
    assert second_opinion("gsm8k", "#### 1,234", "so #### 1234") == (True, "1234")
    assert second_opinion("math", "\\boxed{3}", "Final Answer: The final answer is $3$. I hope it is correct.")[0]


# ------------------------------------------------------------------------------------- CLI


def test_cli_scores_rows_and_reports_bad_ones(tmp_path, capsys):
    from rewards import cli

    rows = ['{"completion": "so\\n#### 18", "gold": "#### 18", "problem_id": "a", "keep": 1}',
            "this is not json",
            '{"completion": "The answer is 3"}',
            "",
            '{"completion": "\\\\boxed{\\\\frac{1}{\\\\sqrt2}}", "gold": "\\\\frac{\\\\sqrt2}{2}"}',
            '{"completion": "#### 5", "gold": "7"}']
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(rows) + "\n")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--task", "math", "--in", str(source), "--out", str(tmp_path / "out.jsonl"),
                              "--audit", "deadline_s=4", "num_workers=1"])
    assert cli.run(args) == 0
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["status"] for r in out] == ["correct", "error", "error", "correct", "wrong"]
    assert out[0]["keep"] == 1 and out[0]["reward"] == 1.0 and out[0]["cluster"] == "18"
    assert out[1]["line"] == 2 and out[2]["completion"] == "The answer is 3"
    err = capsys.readouterr().err
    assert "line 2: not JSON" in err and "line 3: missing field gold" in err
    audit_rows = [json.loads(line) for line in (tmp_path / "out.audit.jsonl").read_text().splitlines()]
    assert [r["row"] for r in audit_rows] == [5] and "disagree" in err

    args = parser.parse_args(["--task", "math", "--in", str(source), "--out", str(tmp_path / "o.jsonl"), "nope=1"])
    with pytest.raises(UserError, match="nope"):
        cli.run(args)
