"""math-verify judgement of one (gold, prediction) pair, plus the answer's cluster fingerprint.

Runs only inside `rewards.worker` processes, in their main thread, where math-verify's
`signal.alarm` timeouts work (off the main thread they raise `ValueError`; disabled, hostile
inputs run for minutes). The parent still enforces a hard deadline and kills the worker when
these inner timeouts are not enough (sympy can block in C code, where no signal arrives).

Cluster fingerprint: equivalent answers must vote together (`1/2`, `0.5`, `\\frac12`). Numbers get
their exact canonical value (`rewards.extract.canonical_number`); other expressions are
evaluated at fixed pseudo-random points for their free symbols, to 12 significant digits;
sets, intervals, equations and the like use sympy's canonical printed form (math-verify already
sorts sets). Equal fingerprints = one cluster (see `rewards.scorer`).
"""

from __future__ import annotations

import logging
import signal
from contextlib import contextmanager
from fractions import Fraction

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException

from rewards.extract import canonical_number
from rewards.two_stage_parse import install as _install_two_stage_parse

_install_two_stage_parse()  # same parses as upstream, several times faster (rewards.two_stage_parse)


class _TimeoutCounter(logging.Handler):
    """math-verify swallows its own timeouts (returns `[]` / False) and only logs a warning with
    the whole, possibly 1 MB, input. Count those warnings instead of printing them, so that a
    timed-out check is reported as `timeout`, not as `wrong` or `no_answer`."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Timeout"):
            self.count += 1


_TIMEOUTS = _TimeoutCounter()
for _name in ("math_verify.parser", "math_verify.grader"):
    _logger = logging.getLogger(_name)
    _logger.setLevel(logging.WARNING)
    _logger.propagate = False
    _logger.addHandler(_TIMEOUTS)
logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)

_EXTRACTION = [LatexExtractionConfig(), ExprExtractionConfig()]
_PARSED: dict[tuple[str, bool], list] = {}  # golds and answers alike: one string, one parse
_CACHE_SIZE = 8192
_SAMPLE_POINTS = (0.5377, 1.8339, -2.2588, 0.8622, 0.3188, -1.3077, -0.4336, 0.3426, 3.5784, 2.7694)


class _Deadline(BaseException):
    """Raised by our own alarm (BaseException, like math-verify's, so `except Exception` can't eat it)."""


@contextmanager
def _alarm(seconds: float):
    def handler(signum, frame):
        raise _Deadline()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _parse_answer(answer: str, is_text: bool, timeout_s: int) -> list:
    """A bare answer is wrapped in `\\boxed{}` so math-verify reads all of it as one expression;
    a completion's tail (`is_text`) goes through math-verify's own extraction."""
    if is_text:
        return parse(answer, extraction_config=_EXTRACTION, parsing_timeout=timeout_s)
    parsed = parse("\\boxed{" + answer + "}", extraction_config=_EXTRACTION, parsing_timeout=timeout_s)
    return parsed or parse(answer, extraction_config=_EXTRACTION, parsing_timeout=timeout_s)


def _cached_parse(cache: dict, answer: str, is_text: bool, timeout_s: int) -> list:
    """Parsing dominates math-verify's cost: each gold (and each answer string, which recurs
    across problems: `1`, `\\sqrt{2}`, the same non-answer) is parsed once per worker, and an
    answer spelled as its gold is the gold's parse (golds and bare answers are parsed alike).
    Failed parses are not cached (a timeout may succeed on a less loaded machine)."""
    key = (answer, is_text)
    if key in cache:
        return cache[key]
    parsed = _parse_answer(answer, is_text, timeout_s)
    if parsed:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = parsed
    return parsed


def judge(gold: str, pred: str, pred_is_text: bool, timeout_s: int = 2) -> dict:
    """Verdict for one pair: `{"status", "pred", "numeric", "fingerprint", "detail"}`.

    status: `correct`, `wrong`, `no_answer` (math-verify finds nothing in `pred`), `error` (gold
    unparseable), `timeout` (math-verify's own timeout fired).
    """
    out: dict = {"status": "error", "pred": None if pred_is_text else pred, "numeric": None,
                 "fingerprint": None, "detail": ""}
    try:
        timeouts = _TIMEOUTS.count
        gold_parsed = _cached_parse(_PARSED, gold, False, timeout_s)
        if not gold_parsed:
            if _TIMEOUTS.count > timeouts:
                out.update(status="timeout", detail="math-verify timed out parsing the gold answer")
            else:
                out["detail"] = f"math-verify cannot parse the gold answer {gold[:80]!r}"
            return out
        timeouts = _TIMEOUTS.count
        pred_parsed = _cached_parse(_PARSED, pred, pred_is_text, timeout_s)
        if not pred_parsed:
            timed_out = _TIMEOUTS.count > timeouts
            out.update(status="timeout" if timed_out else "no_answer", detail=(
                "math-verify timed out parsing the answer" if timed_out else "math-verify finds no answer"))
            return out
        if pred_is_text:
            out["pred"] = str(pred_parsed[-1])[:1000]
        timeouts = _TIMEOUTS.count
        correct = verify(gold_parsed, pred_parsed, timeout_seconds=timeout_s)
        if not correct and _TIMEOUTS.count > timeouts:
            out.update(status="timeout", detail="math-verify timed out comparing")
            return out
        out["status"] = "correct" if correct else "wrong"
    except TimeoutException:
        out.update(status="timeout", detail="math-verify timed out")
        return out
    except MemoryError:
        out.update(status="error", detail="math-verify ran out of memory")
        return out
    except Exception as err:  # noqa: BLE001 - a checker bug is a verdict (`error`), never a crash
        out.update(status="error", detail=f"math-verify failed: {type(err).__name__}: {str(err)[:200]}")
        return out
    try:
        with _alarm(max(0.2, timeout_s / 2)):
            out["numeric"], out["fingerprint"] = _fingerprint(pred_parsed[0])
    except (_Deadline, Exception):  # noqa: BLE001 - no fingerprint: the answer names its own cluster
        pass
    return out


# Answer shapes common in MATH, judged once when a worker starts (`warm_up`); bench/rewards.py warms its
# naive baseline with the same pairs, so both sides are timed judging, not importing.
WARM_UP_PAIRS = (
    ("\\frac{1}{2}", "0.5"), ("2\\sqrt{3}", "\\sqrt{13}"), ("(1, 2]", "[1, 2)"), ("\\{1, 2\\}", "1, 3"),
    ("x^2 + 2x + 1", "(x-1)^2"), ("\\frac{\\pi}{3}", "60^\\circ"), ("y = 2x + 1", "2x - 1"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(1, 2)"), ("x \\in [0, 1]", "[0, 2]"), ("\\text{(A)}", "B"),
    ("3 + 4i", "4 - 3i"), ("-\\infty", "\\infty"))


def warm_up() -> None:
    """Judge a few common answer shapes, so that a worker's first real items do not pay sympy's lazy
    imports (simplify alone loads ~0.3 s of modules) and the parser's first predictions for each shape
    (ANTLR caches them). Part of the worker's start-up, before it says ready."""
    for gold, pred in WARM_UP_PAIRS:
        judge(gold, pred, False)
    _PARSED.clear()


def _fingerprint(expr) -> tuple[str | None, str | None]:
    """(canonical number, None) for numbers; (None, fingerprint) for anything else."""
    import sympy

    if isinstance(expr, str):
        return None, "s:" + expr
    if isinstance(expr, sympy.Expr):
        if expr.is_number:
            value = expr.doit() if not expr.is_Atom else expr
            if value.is_Rational:
                return canonical_number(Fraction(int(value.p), int(value.q))), None
            if value.is_Float:
                return canonical_number(Fraction(str(value)).limit_denominator(10**12)), None
            return None, "n:" + _round(value)
        symbols = sorted(expr.free_symbols, key=lambda s: s.name)
        if len(symbols) <= len(_SAMPLE_POINTS):
            values = dict(zip(symbols, _SAMPLE_POINTS))
            return None, "f:" + ",".join(s.name for s in symbols) + ":" + _round(expr.subs(values))
    return None, "e:" + str(expr)


def _round(value) -> str:
    number = complex(value.evalf(15))
    real = f"{number.real:.12g}"
    return real if abs(number.imag) < 1e-12 else f"{real}{number.imag:+.12g}j"
