"""Collect math-verify's own (gold, prediction, expected) test facts into `math_verify_cases.jsonl`.

Run once, by hand, against a checkout of huggingface/Math-Verify (CI has no network, so the lab
tests read the stored file, never the peer repository):

    cd MATH_VERIFY_CHECKOUT && PYTHONPATH=LAB/tests/data MV_CASES_OUT=LAB/tests/data/math_verify_cases.jsonl \
        MV_SOURCE_COMMIT=$(git rev-parse HEAD) python -m pytest tests -q -o addopts= -p collect_math_verify_cases

Each parametrized case whose test calls `compare_strings(gold, pred, ...)` (or `verify(parse(gold),
parse(pred))`) is recorded with the settings that test passes (extraction targets, precision,
strict, set-relation comparison), so the lab's suite can tell the cases that need settings the lab
does not use from the ones it must agree with. The peer's expected verdict is taken from the
case's parameters, not from running math-verify.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

OUT = os.environ.get("MV_CASES_OUT", "math_verify_cases.jsonl")
_records: list[dict] = []
_current: dict = {}


def _recorder(gold, pred, match_types=("latex", "expr"), precision=6, strict=True, allow_set_relation_comp=False):
    _current.setdefault("calls", []).append({"gold": gold, "pred": pred, "match_types": list(match_types),
                                             "precision": precision, "strict": strict,
                                             "allow_set_relation_comp": allow_set_relation_comp})
    return _current["expected"]  # the test then passes; only the recording matters


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    params = getattr(getattr(item, "callspec", None), "params", {})
    expected = params.get("expected", params.get("result"))
    _current.clear()
    _current["expected"] = expected
    module = item.module
    if hasattr(module, "compare_strings"):
        module.compare_strings = _recorder
    yield
    calls = _current.get("calls", [])
    if not calls and {"gold", "pred"} <= params.keys() and expected is not None:
        # test_yujianll: verify(parse(gold), parse(pred)) with math-verify's default configuration
        calls = [{"gold": params["gold"], "pred": params["pred"], "match_types": ["default"], "precision": 6,
                  "strict": True, "allow_set_relation_comp": False}]
    if expected is None:  # a test without parametrized facts (its own asserts): nothing to record
        return
    for call in calls:
        _records.append({"test": item.nodeid.split("[")[0], **call, "expected": int(bool(expected))})


def pytest_sessionfinish(session):
    commit = os.environ.get("MV_SOURCE_COMMIT") or subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    with open(OUT, "w", encoding="utf-8") as out:
        for record in _records:
            out.write(json.dumps({**record, "source_commit": commit or "unknown"}, ensure_ascii=False) + "\n")
