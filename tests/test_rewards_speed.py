"""The scorer's shortcuts give math-verify's verdicts: two-stage parsing, numbers decided in the caller.

`rewards.two_stage_parse` parses with ANTLR's SLL mode first and falls back to upstream's LL; ANTLR
guarantees the same tree, checked here on every answer of the bench set (`bench/rewards.py`) and of the
held-out cases (math-verify's own suite, the scorer probes). `rewards.lab_rule.decide_numbers` decides
pairs of plain numbers without a worker: every decision it makes is checked against the worker's.
"""

import importlib.util
import json
import random
from pathlib import Path

import pytest
import sympy

from rewards import Scorer
from rewards.extract import extract_answer, extract_gold, normalize_answer, parse_number
from rewards.lab_rule import decide_numbers

ROOT = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_rewards", ROOT / "bench" / "rewards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_rows(problems: int, samples: int) -> list[tuple[str, str, str]]:
    """The bench's set (same generator and seed as `python bench/rewards.py`)."""
    bench, rng, rows = _bench(), random.Random(0), []
    for index in range(problems):
        rows += bench.gsm8k_problem(rng, index, samples)
        rows += bench.math_problem(rng, index, samples)
    return rows


def _held_out() -> list[tuple[str, str]]:
    cases = [json.loads(line) for line in (DATA / "math_verify_cases.jsonl").read_text().splitlines()]
    probes = [json.loads(line) for line in (DATA / "scorer_probes.jsonl").read_text().splitlines()]
    return [(case["gold"], case["pred"]) for case in cases] + [(p["gold"], p["completion"]) for p in probes]


def _as_sent(gold: str, completion: str) -> set[tuple[str, bool]]:
    """The strings the scorer hands math-verify for one pair: the gold's answer, and the answer (or the
    completion's tail, `True`)."""
    found = extract_answer("math", completion)
    strings = {(extract_gold(gold), False)}
    if found.pred is not None:
        strings.add((found.pred if found.source == "text" else normalize_answer(found.pred), found.source == "text"))
    return strings


def _shape(parsed: list) -> list[str]:
    return [sympy.srepr(x) if isinstance(x, sympy.Basic) else repr(x) for x in parsed]


@pytest.mark.slow
def test_two_stage_parse_equals_upstreams_ll_parse():
    from math_verify import parse

    from rewards.equivalence import _parse_answer
    from rewards.two_stage_parse import install, ll_only

    assert install()
    bench = {(gold, completion) for _, gold, completion in _bench_rows(160, 64) if "####" not in gold}
    held_out = _held_out()
    strings = sorted(set().union(*(_as_sent(*pair) for pair in bench | set(held_out))))
    raw = sorted({text for pair in held_out for text in pair})  # what the naive loop parses
    assert len(strings) > 800 and len(raw) > 400

    def parse_all():
        return ([_shape(_parse_answer(text, is_text, 10)) for text, is_text in strings] +
                [_shape(parse(text, parsing_timeout=10)) for text in raw])

    two_stage = parse_all()
    with ll_only():
        ll = parse_all()
    differ = [(i, two_stage[i], ll[i]) for i in range(len(two_stage)) if two_stage[i] != ll[i]]
    assert not differ, differ[:3]


# Plain-number pairs beyond the bench's: signs, slashes, `\frac12`, thousands, decimals, large values.
NUMBER_PAIRS = [("\\frac{3}{4}", "\\frac{4}{4}"), ("\\frac{3}{4}", "\\frac{6}{8}"), ("\\frac{1}{3}", "\\frac{1}{4}"),
                ("-\\frac{1}{2}", "\\frac{1}{2}"), ("\\frac12", "1/2"), ("3/4", "\\frac{3}{5}"), ("7", "\\frac{7}{2}"),
                ("\\frac{22}{7}", "3"), ("1,234", "1234"), ("1,234", "1,235"), ("0.5", "\\frac{1}{2}"),
                ("\\frac{1}{3}", "0.333333"), ("\\frac{1}{3}", "0.3333"), ("2.5", "2.50"), ("-4", "4"),
                ("123456789012/7", "123456789013/7"), ("\\frac{100}{3}", "\\frac{200}{6}"), ("0", "-0")]


@pytest.mark.slow
def test_numbers_decided_in_the_caller_are_the_workers_verdicts():
    golds, preds = [], []
    for _, gold, completion in _bench_rows(160, 8):
        found = extract_answer("math" if "####" not in gold else "gsm8k", completion)
        if found.pred is not None and found.source != "text":
            golds.append(extract_gold(gold))
            preds.append(normalize_answer(found.pred))
    pairs = sorted(set(zip(golds, preds)) | set(NUMBER_PAIRS))
    decided = {pair: decide_numbers(*pair, parse_number(pair[0]), parse_number(pair[1])) for pair in pairs}
    decided = {pair: result for pair, result in decided.items() if result is not None}
    assert sum(result.status == "wrong" and parse_number(pair[0]).denominator > 1
               for pair, result in decided.items()) >= 20  # unequal fractions: decided here since this change
    with Scorer(num_workers=2, deadline_s=10) as scorer:
        items = [{"kind": "judge", "gold": gold, "pred": pred, "pred_is_text": False, "timeout_s": 5,
                  "deadline_s": 10.0} for gold, pred in decided]
        worker = dict(zip(decided, scorer.pool.run(items)))
    differ = {pair: (decided[pair].status, decided[pair].numeric, worker[pair].get("status"),
                     worker[pair].get("numeric")) for pair in decided
              if (decided[pair].status, decided[pair].numeric) !=
              (worker[pair].get("status"), worker[pair].get("numeric") or decided[pair].numeric)}
    assert not differ, differ


@pytest.mark.slow
@pytest.mark.parametrize("problems, samples", [(16, 8)])
def test_scorer_equals_the_naive_loop_on_the_bench_set(problems, samples):
    """Every sample of a slice of the bench set: the lab's verdict (correct or not) is the naive loop's,
    upstream math-verify's LL parse in this process."""
    from math_verify import parse, verify

    from rewards.two_stage_parse import ll_only

    rows = _bench_rows(problems, samples)
    with Scorer(num_workers=2, deadline_s=10) as scorer:
        lab = []
        for task in ("gsm8k", "math"):
            chosen = [row for row in rows if row[0].startswith(task)]
            lab += [(row, v.status == "correct") for row, v in zip(chosen, scorer.score(
                task, [r[1] for r in chosen], [r[2] for r in chosen], [r[0] for r in chosen]))]
    with ll_only():
        differ = [row for row, correct in lab if bool(verify(parse(row[1]), parse(row[2]))) != correct]
    assert not differ, differ[:3]
