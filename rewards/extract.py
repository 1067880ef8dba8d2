"""Find the final answer in a completion or a gold field, and the cheap exact path for plain numbers.

Everything here is regular-expression or single-pass scanning work that runs in the caller's
process: it must stay linear in the input (a 1 MB completion is scanned in milliseconds) and must
never call math-verify or sympy, which may hang (those run in `rewards.worker` processes).

Extraction rules per task (the issue's list; first rule that matches wins):

- `gsm8k` / `toy` (flexible): code (only with `execute_code`, see `find_code`) -> last `\\boxed{}`
  -> first `#### N` -> first `The answer is N` -> first `Answer: N` / `A: N` -> last number.
  Numbers lose `$`, thousands separators and trailing units (`$1,234.50 per week` -> `1234.50`).
- `gsm8k` with `strict=True`: the study's rule (large_language_monkeys' GSM8K scorer): the first
  match of `####`, `Answer:` or `The answer is` followed by a number, else no answer.
- `math`: last `\\boxed{}` / `\\fbox{}` (balanced braces) -> Minerva's `Final Answer: The final
  answer is X. I hope it is correct.` -> `The (final) answer is X` -> the completion's tail, handed
  whole to math-verify's own extraction (what the study's GRPO reward did with `parse(response)`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

TASKS = ("gsm8k", "math", "toy")
# Dataset names that share a task's answer format.
TASK_ALIASES = {"math500": "math", "minerva_math": "math", "gsm_plus": "gsm8k", "gsm-plus": "gsm8k"}


def resolve_task(name: str) -> str:
    """`math500` -> `math`; unknown names raise ValueError naming the accepted ones."""
    task = TASK_ALIASES.get(name, name)
    if task not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS + tuple(TASK_ALIASES))}")
    return task

# A number as GSM8K-style text writes it: optional sign and currency, thousands separators, decimals.
_NUMBER = r"(?:-\s?)?(?:\\?\$\s?)?-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s?/\s?\d+)?"
_STRICT_RE = re.compile(r"(?:####|Answer:|The answer is)\s*\\?\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)")
_HASHES_RE = re.compile(r"####\s*(" + _NUMBER + ")")
_ANSWER_IS_RE = re.compile(r"answer is\s*:?\s*(" + _NUMBER + ")", re.IGNORECASE)
_ANSWER_COLON_RE = re.compile(r"(?:^|\n|\s)(?:Answer|A)\s*:\s*(" + _NUMBER + ")")
_ANY_NUMBER_RE = re.compile(_NUMBER)
_MINERVA_RE = re.compile(r"Final Answer: The final answer is (.{0,2000}?)\. I hope it is correct", re.DOTALL)
_FINAL_ANSWER_IS_RE = re.compile(r"(?:final answer|answer) is[:\s]*([^\n]{1,1000})", re.IGNORECASE)
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")

# Longest answer handed to math-verify, and the tail of a completion parsed when nothing else matches:
# parsing cost grows with input size, so hostile inputs are cut before they reach a worker.
MAX_ANSWER_CHARS = 1000
MAX_COMPLETION_CHARS = 100_000  # ~25k tokens: far beyond any sampled completion; longer ones keep their tail
MAX_TEXT_TAIL_CHARS = 2000
_MAX_BOX_SCAN = 100_000  # a box longer than this is not an answer (and scanning it is wasted time)


@dataclass(frozen=True)
class Extraction:
    """What a completion answers. `pred` is None when nothing was found.

    `source` names the rule that matched (`boxed`, `####`, `code`, `text`, ...); with
    `source == "text"` `pred` is the completion's tail for math-verify to search; with
    `source == "code"` `code` holds the program whose return value is the answer.
    """

    pred: str | None
    source: str
    code: str | None = None


# --------------------------------------------------------------------------------------- boxes


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` (balanced braces) or `\\boxed 5`.

    An unbalanced box (a truncated completion) is skipped for the one before it; at most the last
    three boxes are tried, each scanned at most `_MAX_BOX_SCAN` characters, so the cost stays linear.
    """
    matches = list(_BOX_RE.finditer(text))
    for match in reversed(matches[-3:]):  # a few tries only: many unbalanced boxes must stay linear
        start = match.end()
        rest = text[start:start + 1]
        if rest != "{":  # `\boxed 5` (no braces): up to the next space or `$`
            token = re.match(r"\s*([^\s$]+)", text[start:start + MAX_ANSWER_CHARS])
            if token and rest.isspace():
                return token.group(1)
            continue
        depth = 0
        for i in range(start, min(len(text), start + _MAX_BOX_SCAN)):
            char = text[i]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return text[start + 1:i]
    return None


# -------------------------------------------------------------------------------------- numbers


def clean_number(raw: str) -> str | None:
    """`$1,234.50` -> `1234.50`; `- 5` -> `-5`; returns None when no digit remains."""
    text = raw.replace("\\$", "").replace("$", "").replace(" ", "").replace(",", "")
    negative = text.count("-") % 2 == 1
    text = text.replace("-", "").rstrip(".")
    if not re.fullmatch(r"(?:\d+(?:\.\d+)?|\.\d+)(?:/\d+)?", text):
        return None
    return ("-" if negative and text.strip("0./") else "") + text


_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_FRAC_RE = re.compile(r"(-?)\\frac\s*(?:\{\s*(-?\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))")
_SLASH_RE = re.compile(r"(-?\d+)\s*/\s*(\d+)")


def parse_number(answer: str) -> Fraction | None:
    """Exact value of a plain number (`18`, `-0.5`, `1,234`, `3/4`, `\\frac{1}{2}`, `\\frac12`).

    Anything else (symbols, radicals, tuples like `1,2`, percentages) returns None and goes to
    math-verify. Thousands separators must come in groups of three, so `1,2` stays a tuple.
    """
    text = normalize_answer(answer).replace("\\$", "").replace("$", "").strip()
    if len(text) > 64:
        return None
    if _PLAIN_NUMBER_RE.fullmatch(text):
        return Fraction(text.replace(",", ""))
    for pattern in (_FRAC_RE, _SLASH_RE):
        match = pattern.fullmatch(text)
        if match:
            groups = [g for g in match.groups() if g not in (None, "")]
            sign = -1 if pattern is _FRAC_RE and match.group(1) == "-" else 1
            numerator, denominator = int(groups[-2]), int(groups[-1])
            if denominator == 0:
                return None
            return sign * Fraction(numerator, denominator)
    return None


def canonical_number(value: Fraction) -> str:
    """One spelling per value: `8`, `0.5`, `-1.25`, `1/3` (terminating decimals as decimals)."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator == 1:
        digits = 0
        scaled = value
        while scaled.denominator != 1:
            scaled *= 10
            digits += 1
        text = f"{abs(scaled.numerator):0{digits + 1}d}"
        sign = "-" if value < 0 else ""
        return f"{sign}{text[:-digits]}.{text[-digits:]}"
    return f"{value.numerator}/{value.denominator}"


# ---------------------------------------------------------------------------------- normalising

_LATEX_NOISE = re.compile(r"\\left|\\right|\\displaystyle|\\[!,;: ]")


def normalize_answer(answer: str) -> str:
    """Light, meaning-preserving clean-up: a dedup key and the printable name of an answer cluster.

    Only removes spelling noise (outer `$`, trailing period, spacing macros, `\\left`/`\\right`,
    `\\dfrac`/`\\tfrac`); equivalence itself is math-verify's job.
    """
    text = answer.strip().rstrip(".").strip()
    while len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text[1:-1].strip()
    text = _LATEX_NOISE.sub("", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = re.sub(r"\s+", " ", text).strip().rstrip(".").strip()
    return text


# ----------------------------------------------------------------------------------------- code

_LLM_CODE_RE = re.compile(r"<llm-code>(.*?)(?:</llm-code>|\Z)", re.DOTALL)
_DEF_RE = re.compile(r"^def simple_math_problem\s*\(", re.MULTILINE)
_IMPORT_RE = re.compile(r"^(?:import [\w., ]+|from [\w.]+ import [\w., *]+)$", re.MULTILINE)
MAX_CODE_CHARS = 20_000


def find_code(completion: str) -> str | None:
    """The program a completion answers with: the last `<llm-code>` block, else the
    `def simple_math_problem(): ...` function (TinyGSM convention) up to its last indented line."""
    blocks = _LLM_CODE_RE.findall(completion)
    if blocks:
        return blocks[-1].strip("\n")[:MAX_CODE_CHARS]
    match = _DEF_RE.search(completion)
    if not match:
        return None
    lines = completion[match.start():match.start() + MAX_CODE_CHARS].split("\n")
    body = [lines[0]]
    for line in lines[1:]:
        if line.strip() and not line[0].isspace():
            break  # first unindented line ends the function (prose, ``` fence, next question)
        body.append(line)
    imports = _IMPORT_RE.findall(completion[max(0, match.start() - 2000):match.start()])  # `import math` above
    return "\n".join(imports + body).rstrip()


# ----------------------------------------------------------------------------------- extraction


def extract_answer(task: str, completion: str, strict: bool = False, execute_code: bool = False) -> Extraction:
    """The final answer a completion gives, by the task's rules (see the module docstring)."""
    task = resolve_task(task)
    completion = completion[-MAX_COMPLETION_CHARS:]  # the end holds the answer; bounds the work on 1 MB inputs
    if execute_code:
        code = find_code(completion)
        if code is not None:
            return Extraction(pred=None, source="code", code=code)
    if task == "math":
        return _extract_math(completion)
    if strict:
        match = _STRICT_RE.search(completion)
        pred = clean_number(match.group(1)) if match else None
        return Extraction(pred=pred, source="strict" if pred else "none")
    return _extract_gsm8k(completion)


def _extract_gsm8k(completion: str) -> Extraction:
    boxed = last_boxed(completion)
    if boxed is not None:
        number = _only_number(boxed)
        return Extraction(pred=number if number is not None else normalize_answer(boxed)[:MAX_ANSWER_CHARS],
                          source="boxed")
    for source, pattern in (("####", _HASHES_RE), ("answer is", _ANSWER_IS_RE), ("answer:", _ANSWER_COLON_RE)):
        match = pattern.search(completion)
        if match:
            number = clean_number(match.group(1))
            if number is not None:
                return Extraction(pred=number, source=source)
    last = None
    for last in _ANY_NUMBER_RE.finditer(completion[-MAX_TEXT_TAIL_CHARS * 5:]):
        pass
    if last is not None:
        number = clean_number(last.group(0))
        if number is not None:
            return Extraction(pred=number, source="last number")
    return Extraction(pred=None, source="none")


def _only_number(text: str) -> str | None:
    """`\\$18`, `18 \\text{ eggs}`, `1,234` -> the number; anything with more maths -> None."""
    stripped = re.sub(r"\\text\{[^{}]*\}|\\(?:mbox|mathrm)\{[^{}]*\}|\\%|%", "", text)
    if _FRAC_RE.search(stripped) or re.search(r"[a-zA-Z\\^_{}()\[\]=]", stripped.replace("\\$", "")):
        return None
    match = _ANY_NUMBER_RE.fullmatch(stripped.strip())
    return clean_number(match.group(0)) if match else None


def _extract_math(completion: str) -> Extraction:
    boxed = last_boxed(completion)
    if boxed is not None:
        return Extraction(pred=normalize_answer(boxed)[:MAX_ANSWER_CHARS], source="boxed")
    last_claim = completion.rfind("Final Answer: The final answer is")
    minerva = _MINERVA_RE.match(completion, last_claim) if last_claim >= 0 else None
    if minerva is not None:
        return Extraction(pred=normalize_answer(minerva.group(1))[:MAX_ANSWER_CHARS], source="minerva")
    stated = None
    for stated in _FINAL_ANSWER_IS_RE.finditer(completion):
        pass
    if stated is not None:
        answer = normalize_answer(stated.group(1))
        if answer:
            return Extraction(pred=answer[:MAX_ANSWER_CHARS], source="answer is")
    tail = completion[-MAX_TEXT_TAIL_CHARS:]
    if not tail.strip():
        return Extraction(pred=None, source="none")
    return Extraction(pred=tail, source="text")


def extract_gold(gold: str) -> str:
    """A gold given as the dataset's raw field or as a bare answer -> the bare answer.

    GSM8K solutions end in `#### N` (text after the last `####`, separators removed); MATH
    solutions hold `\\boxed{}` (the last one); anything else is already the answer.
    """
    text = str(gold)
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip()
        number = clean_number(tail)
        return number if number is not None else normalize_answer(tail)
    if _BOX_RE.search(text):
        boxed = last_boxed(text)
        if boxed is not None:
            return normalize_answer(boxed)
    number = clean_number(text) if re.fullmatch(r"[\s$\\\-\d,./]+", text) else None
    if number is not None and re.fullmatch(r"\s*\\?\$?-?\d{1,3}(,\d{3})+(\.\d+)?\s*", text) is None and "," in text:
        return normalize_answer(text)  # `1,2`: a tuple, not a thousands-separated number
    return number if number is not None else normalize_answer(text)
