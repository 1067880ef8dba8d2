"""The scorer's shortcuts give math-verify's verdicts: two-stage parsing, numbers decided in the caller.

`rewards.two_stage_parse` parses with ANTLR's SLL mode first and falls back to upstream's LL; ANTLR
guarantees the same tree, checked here on every answer of the bench set (`bench/rewards.py`) and of the
held-out cases (math-verify's own suite, the scorer probes). `rewards.lab_rule.decide_numbers` decides
pairs of plain numbers without a worker: every decision it makes is checked against the worker's.
`rewards.numeric_guard` skips math-verify's `simplify` where two constant numbers differ: verify's verdicts
with and without it. `LabScoring.score` handles repeated samples once: verdicts as one record per sample.
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


# Where math-verify's earlier comparisons decide, or where numbers agree to many digits: the guard must not
# change a verdict (percentages, rounded floats, pi, complex numbers, infinities, sets and intervals of radicals).
GUARD_PAIRS = [("9\\%", "9"), ("\\frac{1}{3}", "0.333333"), ("\\sqrt{2}", "1.41421"), ("\\sqrt{2}", "1.414214"),
               ("\\pi", "3.14159"), ("\\pi", "\\frac{22}{7}"), ("2\\sqrt{3}", "\\sqrt{12}"), ("3 + 4i", "4 - 3i"),
               ("3 + 4i", "\\sqrt{-16} + 3"), ("\\infty", "-\\infty"), ("\\{\\sqrt{2}, 1\\}", "\\{1, \\sqrt{3}\\}"),
               ("(\\sqrt{2}, 3]", "(1.41421356, 3]"), ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
               ("e^{i\\pi}", "-1"), ("10^{20} + 1", "10^{20}"), ("\\log_2 8", "3"), ("x + 1", "1 + x")]


@pytest.mark.slow
def test_numeric_guard_gives_upstreams_verify():
    from math_verify import verify

    from rewards.equivalence import _parse_answer
    from rewards.numeric_guard import clearly_different, install, uninstall

    pairs = {(extract_gold(gold), normalize_answer(found.pred))
             for _, gold, completion in _bench_rows(160, 64) if "####" not in gold
             for found in [extract_answer("math", completion)] if found.pred is not None and found.source != "text"}
    pairs = sorted(pairs | set(GUARD_PAIRS) | {(gold, pred) for gold, pred in _held_out() if len(pred) < 200})
    parsed = [(_parse_answer(gold, False, 10), _parse_answer(pred, False, 10)) for gold, pred in pairs]
    upstream = [bool(verify(g, p, timeout_seconds=10)) for g, p in parsed]
    try:
        assert install()
        guarded = [bool(verify(g, p, timeout_seconds=10)) for g, p in parsed]
    finally:
        uninstall()
    differ = [(pairs[i], upstream[i]) for i in range(len(pairs)) if upstream[i] != guarded[i]]
    assert len(pairs) > 700 and sum(upstream) > 100 and not differ, differ[:5]
    skipped = sum(bool(g and p) and clearly_different(g[0], p[0]) for g, p in parsed)
    assert skipped > 100  # the guard is not a no-op on this set


def test_numeric_guard_skips_simplify_only_for_unequal_constants():
    import sympy as sp

    from rewards.numeric_guard import clearly_different

    assert clearly_different(2 * sp.sqrt(3), sp.sqrt(13))
    assert clearly_different(sp.Rational(1, 3), sp.Float("0.333333"))
    assert not clearly_different(2 * sp.sqrt(3), sp.sqrt(12))  # equal values: upstream decides
    assert not clearly_different(sp.pi, sp.pi + sp.Rational(1, 10**12))  # closer than 1e-9: upstream decides
    assert not clearly_different(sp.Symbol("x") + 1, sp.Integer(1))  # symbols: upstream decides
    assert not clearly_different(sp.oo, sp.Integer(1)) and not clearly_different(sp.zoo, sp.Integer(1))
    assert not clearly_different(sp.FiniteSet(1, 2), sp.FiniteSet(1, 3))  # not an expression


@pytest.mark.slow
def test_repeated_samples_get_the_verdicts_of_one_record_each():
    """Repeats are judged once: the verdicts equal those of the same set where every repeat is made distinct
    by trailing spaces (which change no answer), with and without problem ids, mixed with conversational
    completions (unhashable) and golds equal as keys but not as text (1, 1.0)."""
    rows = _bench_rows(16, 8)
    seen: dict[str, int] = {}
    spaced = []
    for _, _, completion in rows:
        seen[completion] = seen.get(completion, -1) + 1
        spaced.append(completion + " " * seen[completion])
    assert len(set(spaced)) == len(rows) > len({c for _, _, c in rows})
    with Scorer(num_workers=2, deadline_s=10) as scorer:
        for task in ("gsm8k", "math"):
            chosen = [i for i, row in enumerate(rows) if row[0].startswith(task)]
            golds, ids = [rows[i][1] for i in chosen], [rows[i][0] for i in chosen]
            for problem_ids in (ids, None):
                repeated = scorer.score(task, golds, [rows[i][2] for i in chosen], problem_ids)
                distinct = scorer.score(task, golds, [spaced[i] for i in chosen], problem_ids)
                assert repeated == distinct
        mixed_golds = [1, 1.0, "1", 1, 1.0]
        mixed = ["The answer is 1.", "The answer is 1.", [{"role": "assistant", "content": "The answer is 1."}],
                 "The answer is 1.", [{"role": "assistant", "content": "The answer is 2."}]]
        verdicts = scorer.score("gsm8k", mixed_golds, mixed, ["p"] * 5)
        assert [v.status for v in verdicts] == ["correct"] * 4 + ["wrong"]
