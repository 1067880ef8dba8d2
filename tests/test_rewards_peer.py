"""The scorer against math-verify's own test suite, and probes for the defects that suite exposed.

`tests/data/math_verify_cases.jsonl` holds the (gold, prediction, expected) facts of
huggingface/Math-Verify's tests (collected once by `tests/data/collect_math_verify_cases.py`; CI
has no network). Each runs through the lab's `math` rule (gold as given, prediction as the
completion). Every disagreement must be one listed, with its reason, in
`tests/data/math_verify_disagreements.json` and `rewards/README.md`; none may accept a wrong answer.
"""

import json
import re
from pathlib import Path

import pytest

from rewards import Scorer
from rewards.extract import extract_answer, extract_gold, final_boxed, last_boxed, normalize_answer, parse_number
from rewards.sandbox import LIBRARY_IMPORT_S, deadline_for, libraries_used

DATA = Path(__file__).parent / "data"
CASES = [json.loads(line) for line in (DATA / "math_verify_cases.jsonl").read_text().splitlines()]
KNOWN = json.loads((DATA / "math_verify_disagreements.json").read_text())["cases"]
# Cases that accept an answer the peer rejects: allowed only where the answer is in fact right.
RIGHT_ANSWERS_THE_PEER_REJECTS = {"32", "33"}


@pytest.fixture(scope="module")
def scorer():
    with Scorer(num_workers=2, deadline_s=5) as shared:
        yield shared


def _verdicts(scorer, pairs):
    golds, completions = zip(*pairs)
    return [v.status for v in scorer.score("math", list(golds), list(completions), list(range(len(pairs))))]


@pytest.mark.slow
def test_the_peer_suite_agrees_except_the_listed_cases(scorer):
    statuses = _verdicts(scorer, [(case["gold"], case["pred"]) for case in CASES])
    assert len(CASES) == 269 and sum(case["match_types"] != ["expr"] for case in CASES) == 250
    disagree = {str(line): status for line, (case, status) in enumerate(zip(CASES, statuses), 1)
                if int(status == "correct") != case["expected"]}
    assert set(disagree) == set(KNOWN), {line: (CASES[int(line) - 1]["gold"], CASES[int(line) - 1]["pred"])
                                         for line in set(disagree) ^ set(KNOWN)}
    false_accepts = {line for line, status in disagree.items() if status == "correct"}
    assert false_accepts == RIGHT_ANSWERS_THE_PEER_REJECTS


def test_every_listed_disagreement_is_in_the_rewards_readme():
    readme = (Path(__file__).parents[1] / "rewards" / "README.md").read_text()
    section = readme.split("### Disagreements with math-verify's own tests", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| (\d+) \|", section, re.MULTILINE))
    assert listed == set(KNOWN)


# ----------------------------------------------------------------------------------- probes

# Probes for each defect math-verify's suite and issue #18 exposed (vectors, matrices with and without
# spaces, fractions inside matrices, MATH solutions as golds, thin-space thousands, comma golds,
# several boxes, final lines after boxes): (name, gold, completion, the right verdict).
PROBES = {row["name"]: row for row in map(json.loads, (DATA / "scorer_probes.jsonl").read_text().splitlines())}
VECTOR = PROBES["vector as written"]["gold"]


@pytest.mark.parametrize("name", list(PROBES))
def test_probe(scorer, name):
    probe = PROBES[name]
    assert _verdicts(scorer, [(probe["gold"], probe["completion"])]) == [probe["verdict"]]


def test_gsm8k_takes_the_last_box_unless_a_final_line_follows(scorer):
    golds = ["#### 6", "#### 7", "#### 12", "#### 6"]
    completions = [r"\boxed{5} or \boxed{6}", "\\boxed{12} is the price.\n#### 7", r"\boxed{12}. The answer is right.",
                   r"\boxed{5}. Then \boxed{6}"]
    # GSM8K answers are one number: the last box, never joined (GSM8K prose is full of currency `$`)
    assert [v.status for v in scorer.score("gsm8k", golds, completions)] == ["correct", "correct", "correct", "correct"]


def test_row_breaks_and_thin_spaces_survive_normalisation():
    assert normalize_answer(VECTOR) == VECTOR
    assert normalize_answer(r"\left( 1 \\ 2 \right)") == r"( 1 \\ 2 )"
    assert normalize_answer(r"32,\! 349") == normalize_answer(r"32,\!349") == normalize_answer("32{,}349") == "32349"
    assert normalize_answer(r"1,\! 000,\! 000") == "1000000" and normalize_answer(r"1\,000") == "1000"
    assert normalize_answer(r"[1,\,100]") == "[1,100]"  # a list with a thin space stays a list
    assert normalize_answer(r"(1,\! 2)") == "(1, 2)"  # not a thousands group: only the thin space goes
    assert parse_number("0,111") is None and parse_number("1,234") == 1234 and extract_gold("0,111") == "0,111"


def test_final_boxed_joins_one_answer_and_stops_at_prose():
    assert final_boxed(r"so \boxed{-2} and \boxed{1}.") == "-2, 1"
    assert final_boxed(r"\boxed{1},\boxed{2},\boxed{3}") == final_boxed(r"\boxed{1}\boxed{2}\boxed{3}") == "1, 2, 3"
    assert final_boxed(r"\(\boxed{1}\) and \(\boxed{-2}\).") == "1, -2"
    assert final_boxed(r"$\boxed{3} \text{ for part (a) and } \boxed{1}$") == "3, 1"  # one environment
    assert final_boxed(r"$y_1 = \boxed{a}$ and $y_2 = \boxed{b}$") == "a, b"
    assert final_boxed(r"\boxed{1} ahh no it's \boxed{2}") == "2"
    assert final_boxed(r"$\boxed{5}$. Then we get $\boxed{6}$") == "6"
    assert final_boxed(r"\boxed{5} and then \boxed{6}") == final_boxed(r"\boxed{5} or rather \boxed{6}") == "6"
    assert final_boxed(r"\boxed{1}" + "$" * 100_000 + r"x\boxed{2}") == "2"  # long gaps: prose, checked in linear time
    assert final_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}") == last_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}")
    assert final_boxed("no box") is None and final_boxed(r"\boxed{7") is None
    assert extract_answer("math", r"\boxed{1} and \boxed{2}").pred == "1, 2"
    assert extract_gold(r"So $\boxed{1}$ and $\boxed{-2}$.") == "1, -2"


# ---------------------------------------------------------------------------- code answers

SYMPY_LLM_CODE = """Let me solve it.
<llm-code>
from sympy import symbols, solve, Rational
x = symbols('x')
sol = solve(3*x - Rational(36, 2), x)
sol[0]
</llm-code>
<llm-code-output>
6
</llm-code-output>"""
NUMPY_FUNCTION = """def simple_math_problem():
    import numpy as np
    prices = np.array([3.5, 2.25, 4.25])
    return float(np.sum(prices) * 2)
"""
SYMPY_FRACTION = "<llm-code>\nimport sympy as sp\nsp.Rational(1, 4) + sp.Rational(1, 4)\n</llm-code>"
SYMPY_RADICAL = "<llm-code>\nfrom sympy import sqrt, simplify\nsimplify(sqrt(8) / 2)\n</llm-code>"
NUMPY_LINALG = "<llm-code>\nimport numpy as np\nnp.linalg.solve([[2, 1], [1, 3]], [3, 5])[1]\n</llm-code>"


@pytest.mark.parametrize("task, gold, code, verdict", [
    ("gsm8k", "#### 6", SYMPY_LLM_CODE, "correct"),
    ("gsm8k", "#### 7", SYMPY_LLM_CODE, "wrong"),
    ("gsm8k", "#### 20", NUMPY_FUNCTION, "correct"),
    ("gsm8k", "#### 21", NUMPY_FUNCTION, "wrong"),
    ("math", "\\frac{1}{2}", SYMPY_FRACTION, "correct"),
    ("math", "\\sqrt{2}", SYMPY_RADICAL, "correct"),
    ("math", "\\sqrt{3}", SYMPY_RADICAL, "wrong"),
    ("math", "1.4", NUMPY_LINALG, "correct"),
])
def test_code_that_imports_sympy_or_numpy_scores_like_its_result(scorer, task, gold, code, verdict):
    [result] = scorer.score(task, [gold], [code], execute_code=True)
    assert result.status == verdict, result


def test_only_programs_that_import_a_library_pay_for_it():
    assert libraries_used("from sympy import symbols, solve\nx = symbols('x')") == ["sympy"]
    assert libraries_used("def simple_math_problem():\n    import math, numpy as np\n    return 1") == ["numpy"]
    assert libraries_used("import sys, os, sympy.ntheory") == ["sympy"]
    assert libraries_used("import math\n# import sympy would be nice\nx = 'import numpy'") == []
    assert libraries_used("import sympyx\nfrom numpyro import x") == []
    assert deadline_for("import numpy", 3.0) == deadline_for("import math", 3.0) + LIBRARY_IMPORT_S
