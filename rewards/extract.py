"""Find the final answer in a completion or a gold field, and the cheap exact path for plain numbers.

Everything here is regular-expression or single-pass scanning work that runs in the caller's
process: it must stay linear in the input (a 1 MB completion is scanned in milliseconds) and must
never call math-verify or sympy, which may hang (those run in `rewards.worker` processes).

Extraction rules per task (first rule that matches wins; the reasons are in rewards/README.md):

- `gsm8k` / `toy` (flexible): code (only with `execute_code`, see `find_code`) -> a `#### N`
  written after the last box -> the last box (one number, never joined) -> first `#### N` -> first
  `The answer is N` -> first `Answer: N` / `A: N` -> last number.
  Numbers lose `$`, thousands separators and trailing units (`$1,234.50 per week` -> `1234.50`).
- `gsm8k` with `strict=True`: the study's rule (large_language_monkeys' GSM8K scorer): the first
  match of `####`, `Answer:` or `The answer is` followed by a number, else no answer.
- `math`: a Minerva `Final Answer: The final answer is X. I hope it is correct.` or `The final
  answer is $X$` written after the last box -> the boxed answer (`final_boxed`: the
  last `\\boxed{}` / `\\fbox{}` joined with the boxes of the same answer before it, as math-verify
  joins them) -> Minerva's line -> `The (final) answer is X` -> the completion's tail, handed
  whole to math-verify's own extraction (what the study's GRPO reward did with `parse(response)`).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from fractions import Fraction

# The checker tasks: sets of answer rules, not datasets. Which task checks a dataset (math500 -> math,
# gsm_plus -> gsm8k, humaneval -> code) is the datasets layer's knowledge (tasks.datasets.DATASETS), above
# this one. `code` is not an answer rule: the completion is a program and the gold its tests
# (`rewards.scorer.Scorer.score`).
TASKS = ("gsm8k", "math", "toy", "code")


def resolve_task(name: str) -> str:
    """`name` if it is a checker task; anything else (a dataset name too) raises ValueError naming the fix."""
    if name not in TASKS:
        raise ValueError(f"unknown checker task {name!r}; expected one of {', '.join(TASKS)} (a dataset's "
                         f"checker task is listed in tasks.datasets.DATASETS, e.g. math500 -> math)")
    return name

# A number as GSM8K-style text writes it: optional sign and currency, thousands separators, decimals.
_NUMBER = r"(?:-\s?)?(?:\\?\$\s?)?-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s?/\s?\d+)?"
_STRICT_RE = re.compile(r"(?:####|Answer:|The answer is)\s*\\?\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)")
_HASHES_RE = re.compile(r"####\s*(" + _NUMBER + ")")
_ANSWER_IS_RE = re.compile(r"answer is\s*:?\s*(" + _NUMBER + ")", re.IGNORECASE)
_ANSWER_COLON_RE = re.compile(r"(?:^|\n|\s)(?:Answer|A)\s*:\s*(" + _NUMBER + ")")
_ANY_NUMBER_RE = re.compile(_NUMBER)
_MINERVA_RE = re.compile(r"Final Answer: The final answer is (.{0,2000}?)\. I hope it is correct", re.DOTALL)
_FINAL_ANSWER_IS_RE = re.compile(r"(?:final answer|answer) is[:\s]*([^\n]{1,1000})", re.IGNORECASE)
# After the last box only an explicit final answer in math delimiters overrides it ("The final answer
# is $10,455$"): a bare number would be cut (`3/4` -> 3) and "the answer is 6 * 7" is working, not an answer.
_FINAL_MATH_ANSWER_RE = re.compile(r"final answer is[:\s]*(\$[^$\n]{1,1000}\$)", re.IGNORECASE)
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

_MAX_JOINED_BOXES = 8  # a run of boxes longer than this keeps its last 8 (math-verify joins up to 6 by connectors)
# Text allowed between two boxes of one answer ("\boxed{1}, \boxed{2}", "\boxed{1} and \boxed{2}",
# "\boxed{1} papers and \boxed{2} bins", "\boxed{a} and y_2 = \boxed{b}"): spacing, math delimiters,
# a connector after at most two words (and one word after it, not `then`/`so`/...), then a variable's
# label; a hedge (`\boxed{5}, or maybe \boxed{6}`) is thus one answer, {5, 6}; anything else
# ("\boxed{5}. Then we get \boxed{6}") separates an intermediate value.
_SPACING_RE = re.compile(r"\\(?:quad|qquad|[,;:! ])|~|\\text\s*\{\s*([^{}]*?)\s*\}|\$|\\[\[\]()]")
_CONNECTOR_RE = re.compile(r" ?(?:(?:[A-Za-z]+ ){0,2}?(?:,|;|,? ?\b(?:and|or)\b) ?"
                           r"(?:(?!(?:then|so|thus|hence|finally|therefore|rather|actually|instead|wait|no|sorry|"
                           r"better|correction)\b)[A-Za-z]+ )?)?"  # `or maybe \boxed`, not `or rather \boxed`
                           r"(?:[A-Za-z](?:_\{?\w+\}?)? ?= ?)?", re.IGNORECASE)  # `... and y_2 = \boxed{}`
_MAX_CONNECTOR_GAP = 200  # longer text between two boxes is prose, never a connector (and keeps the check linear)
_MATH_DELIMITER_RE = re.compile(r"(?<!\\)\$\$|(?<!\\)\$|\\\[|\\\]|\\\(|\\\)")


def _balanced_boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of the last few balanced `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5`, in order.

    An unbalanced box (a truncated completion) is skipped; at most the last `_MAX_JOINED_BOXES + 3`
    boxes are tried, each scanned at most `_MAX_BOX_SCAN` characters, so the cost stays linear.
    """
    matches = list(_BOX_RE.finditer(text))[-(_MAX_JOINED_BOXES + 3):]
    boxes = []
    for match in matches:
        start = match.end()
        rest = text[start:start + 1]
        if rest != "{":  # `\boxed 5` (no braces): up to the next space or `$`
            token = re.match(r"\s*([^\s$]+)", text[start:start + MAX_ANSWER_CHARS])
            if token and rest.isspace():
                boxes.append((match.start(), start + token.end(), token.group(1)))
            continue
        depth = 0
        for i in range(start, min(len(text), start + _MAX_BOX_SCAN)):
            char = text[i]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    boxes.append((match.start(), i + 1, text[start + 1:i]))
                    break
    return [box for k, box in enumerate(boxes) if k == 0 or box[0] >= boxes[k - 1][1]]  # no box inside a box


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5` (one box, never joined)."""
    boxes = _balanced_boxes(text)
    return boxes[-1][2] if boxes else None


def _math_environment_of(text: str, positions: list[int]) -> list[int | None]:
    """For each position, the index of the `$...$`/`$$...$$`/`\\[...\\]`/`\\(...\\)` it lies in (None: prose)."""
    spans, opened, kind = [], None, None
    closers = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}
    for match in _MATH_DELIMITER_RE.finditer(text):
        token = match.group(0)
        if opened is None and token in closers:
            opened, kind = match.end(), closers[token]
        elif opened is not None and token == kind:
            spans.append((opened, match.start()))
            opened = None
    # An environment left open is no environment: in GSM8K-style prose a lone currency `$` would
    # otherwise swallow every box after it.
    starts = [lo for lo, _ in spans]
    found = []
    for position in positions:
        k = bisect.bisect_right(starts, position) - 1
        found.append(k if k >= 0 and position < spans[k][1] else None)
    return found


def final_boxed(text: str) -> str | None:
    """The boxed answer of a text: the last box joined with the boxes just before it that belong to the
    same answer, as math-verify (>= 0.8) joins them: `\\boxed{-2} and \\boxed{1}` -> `-2, 1`.

    Boxes belong together when they sit in one math environment (`$$\\boxed{(2,2)} \\text{ and }
    \\boxed{(6,2)}$$`) or only spacing, delimiters and a connector separate them (see `_CONNECTOR_RE`).
    `\\boxed{5}. Then we get \\boxed{6}` is one answer, `6`: the first box was an intermediate value.
    Linear in the text (only the last few boxes are looked at).
    """
    boxes = _balanced_boxes(text)
    if len(boxes) < 2:
        return boxes[0][2] if boxes else None
    environments = _math_environment_of(text, [start for start, _, _ in boxes])
    run = [boxes[-1]]
    for k in range(len(boxes) - 2, -1, -1):
        if len(run) >= _MAX_JOINED_BOXES:
            break
        gap = text[boxes[k][1]:boxes[k + 1][0]]
        same_environment = environments[k] is not None and environments[k] == environments[k + 1]
        words = "".join(w + " " for w in _SPACING_RE.sub(lambda m: f" {m.group(1) or ''} ",
                                                           gap[:_MAX_CONNECTOR_GAP + 1]).split())
        connector = len(gap) <= _MAX_CONNECTOR_GAP and _CONNECTOR_RE.fullmatch(words) is not None
        if not (same_environment or connector):
            break
        run.insert(0, boxes[k])
    return ", ".join(content.strip() for _, _, content in run)


# -------------------------------------------------------------------------------------- numbers


def clean_number(raw: str) -> str | None:
    """`$1,234.50` -> `1234.50`; `- 5` -> `-5`; returns None when no digit remains."""
    text = raw.replace("\\$", "").replace("$", "").replace(" ", "").replace(",", "")
    negative = text.count("-") % 2 == 1
    text = text.replace("-", "").rstrip(".")
    if not re.fullmatch(r"(?:\d+(?:\.\d+)?|\.\d+)(?:/\d+)?", text):
        return None
    return ("-" if negative and text.strip("0./") else "") + text


_PLAIN_NUMBER_RE = re.compile(r"-?(?:[1-9]\d{0,2}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_FRAC_RE = re.compile(r"(-?)\\frac\s*(?:\{\s*(-?\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))")
_SLASH_RE = re.compile(r"(-?\d+)\s*/\s*(\d+)")


def parse_number(answer: str) -> Fraction | None:
    """Exact value of a plain number (`18`, `-0.5`, `1,234`, `3/4`, `\\frac{1}{2}`, `\\frac12`).

    Anything else (symbols, radicals, tuples like `1,2`, percentages) returns None and goes to
    math-verify. Thousands separators must come in groups of three after a non-zero lead, so `1,2`
    stays a tuple and `0,111` (a decimal comma) goes to math-verify, which reads it as 0.111.
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

# Spacing macros are noise; `\\` (a matrix or vector row break) is not: the alternation takes a `\\`
# pair first, so `1 \\ 2` keeps both backslashes (removing `\ ` from it would merge the rows).
_LATEX_NOISE = re.compile(r"\\\\|\\left|\\right|\\displaystyle|\\[!,;: ]")
# Thousands written MATH's way, a comma and a negative thin space (`32,\! 349`), or a braced comma
# (`10{,}000`): the separator goes, so the number stays one number instead of the set {32, 349}.
# `1\,000` becomes `1000` with the other spacing macros. Not `1,\,100`: that is a list.
_THIN_THOUSANDS_RE = re.compile(r"(?<=\d)(?:,\\!\s*|\{,\})(?=\d{3}(?!\d))")


def normalize_answer(answer: str) -> str:
    """Light, meaning-preserving clean-up: a dedup key and the printable name of an answer cluster.

    The one normalisation of golds and predictions alike. Only removes spelling noise (outer `$`,
    trailing period, spacing macros, `\\left`/`\\right`, `\\dfrac`/`\\tfrac`, thin-space thousands
    separators); row breaks `\\\\` survive. Equivalence itself is math-verify's job.
    """
    text = answer.strip().rstrip(".").strip()
    while len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text[1:-1].strip()
    text = _THIN_THOUSANDS_RE.sub("", text)
    text = _LATEX_NOISE.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else "", text)
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
    boxes = _balanced_boxes(completion)
    after_box = _stated_after(completion, boxes, (("####", _HASHES_RE),))
    if after_box is not None:
        number = clean_number(after_box[1].group(1))
        if number is not None:
            return Extraction(pred=number, source=after_box[0])
    boxed = boxes[-1][2] if boxes else None  # one number: the last box (GSM8K prose is full of currency `$`)
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


def _stated_after(completion: str, boxes: list, rules: tuple) -> tuple[str, re.Match] | None:
    """The last final-answer statement that begins after the last box, by the first rule that has one.

    Boxes in a long solution are often intermediate values; a closing `Final Answer: The final
    answer is X` (Minerva) or `#### X` written after them is what the completion answers."""
    if not boxes:
        return None
    end = boxes[-1][1]
    for source, pattern in rules:
        found = None
        for found in pattern.finditer(completion, end):
            pass
        if found is not None:
            return source, found
    return None


def _only_number(text: str) -> str | None:
    """`\\$18`, `18 \\text{ eggs}`, `1,234` -> the number; anything with more maths -> None."""
    stripped = re.sub(r"\\text\{[^{}]*\}|\\(?:mbox|mathrm)\{[^{}]*\}|\\%|%", "", text)
    if _FRAC_RE.search(stripped) or re.search(r"[a-zA-Z\\^_{}()\[\]=]", stripped.replace("\\$", "")):
        return None
    match = _ANY_NUMBER_RE.fullmatch(stripped.strip())
    return clean_number(match.group(0)) if match else None


def _extract_math(completion: str) -> Extraction:
    boxes = _balanced_boxes(completion)
    after_box = _stated_after(completion, boxes, (("minerva", _MINERVA_RE), ("final answer", _FINAL_MATH_ANSWER_RE)))
    if after_box is not None:
        answer = normalize_answer(after_box[1].group(1))
        if answer:
            return Extraction(pred=answer[:MAX_ANSWER_CHARS], source=after_box[0])
    boxed = final_boxed(completion) if boxes else None
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
    solutions hold `\\boxed{}` (the final boxed answer, several adjacent boxes joined as in completions,
    see `final_boxed`); anything else is already the answer.
    """
    text = str(gold)
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip()
        number = clean_number(tail)
        return number if number is not None else normalize_answer(tail)
    if _BOX_RE.search(text):
        boxed = final_boxed(text)
        if boxed is not None:
            return normalize_answer(boxed)
    number = clean_number(text) if re.fullmatch(r"[\s$\\\-\d,./]+", text) else None
    thousands = re.fullmatch(r"\s*\\?\$?-?[1-9]\d{0,2}(,\d{3})+(\.\d+)?\s*", text)
    if number is not None and thousands is None and "," in text:
        return normalize_answer(text)  # `1,2`: a tuple; `0,111`: a decimal comma; not thousands
    return number if number is not None else normalize_answer(text)
