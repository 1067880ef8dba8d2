"""A second, independent checker, to show where math-verify's verdicts may be wrong.

Before trusting a curve, users compare the lab's verdicts with a checker that shares none of its
code: the Hendrycks MATH / Minerva convention (last `\\boxed{}`, or `Final Answer: The final
answer is ...`; string equality after the `is_equiv` normalisation: `\\dfrac` -> `\\frac`, units,
`^\\circ`, `\\%`, `0.5` -> `\\frac{1}{2}`, `a/b` -> `\\frac{a}{b}`, ...) for MATH, and lm-eval's
GSM8K convention (`#### N`, else the last number; equal as numbers) for GSM8K and toy.
Written from the published descriptions, not copied. Programs are not re-run: for code answers
the second checker compares the lab's executed answer.

A disagreement is a sample that one checker calls correct and the other does not. Typical
findings: math-verify accepting `0.333333` for `1/3` (6-digit rounding), string matching missing
`\\frac{\\sqrt2}{2}` = `\\frac{1}{\\sqrt2}`, or an extraction difference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field


def last_boxed_content(text: str) -> str | None:
    index = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if index < 0:
        return None
    brace = text.find("{", index)
    if brace < 0:
        return None
    depth = 0
    for position in range(brace, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1:position]
    return None


def _fix_fracs(text: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{2}` -> `\\frac{1}{2}`."""
    parts = text.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part.startswith("{"):
            out += part
            continue
        if len(part) < 2:
            return text
        numerator, rest = part[0], part[1:]
        if rest.startswith("{"):
            out += "{" + numerator + "}" + rest
        else:
            out += "{" + numerator + "}{" + rest[0] + "}" + rest[1:]
    return out


def _fix_slash(text: str) -> str:
    match = re.fullmatch(r"(-?\d+)/(\d+)", text)
    return f"\\frac{{{match.group(1)}}}{{{match.group(2)}}}" if match else text


def _fix_sqrt(text: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", text)


def strip_string(text: str) -> str:
    """The `is_equiv` normalisation (Hendrycks et al. 2021, MATH `math_equivalence.py`)."""
    text = text.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    text = text.replace("tfrac", "frac").replace("dfrac", "frac")
    text = text.replace("\\left", "").replace("\\right", "")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "")
    text = text.replace("\\$", "").replace("$", "")
    text = re.sub(r"\\text\{\s*[a-zA-Z ]*\}$", "", text.strip()) if re.search(r"\d", text) else text
    text = text.replace("\\%", "").replace("%", "")
    text = text.replace(" .", " 0.").replace("{.", "{0.")
    if text.startswith("."):
        text = "0" + text
    if "=" in text and len(text.split("=")[0]) <= 2:  # `x = 5` -> `5`
        text = text.split("=", 1)[1]
    text = _fix_sqrt(text).replace(" ", "")
    text = _fix_fracs(text)
    if text == "0.5":
        text = "\\frac{1}{2}"
    return _fix_slash(text)


def is_equiv(gold: str, pred: str) -> bool:
    try:
        return strip_string(gold) == strip_string(pred)
    except Exception:  # noqa: BLE001 - a normaliser failure falls back to raw equality
        return gold == pred


_GSM_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


def _gsm_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").rstrip("."))
    except ValueError:
        return None


def second_opinion(task: str, gold: str, completion: str, code_answer: str | None = None) -> tuple[bool, str | None]:
    """(correct, extracted answer) according to the independent checker."""
    if task == "math":
        gold_answer = gold.rsplit("####", 1)[1].strip() if "####" in gold else last_boxed_content(gold) or gold.strip()
        pred = code_answer
        if pred is None:
            pred = last_boxed_content(completion)
        if pred is None:
            match = re.search(r"Final Answer: The final answer is (.*?)\. I hope it is correct", completion, re.DOTALL)
            pred = match.group(1) if match else None
        if pred is None and "####" in completion:
            pred = completion.rsplit("####", 1)[1].strip().split("\n")[0]
        return (pred is not None and is_equiv(gold_answer, pred)), pred
    gold_answer = gold.rsplit("####", 1)[-1].strip()
    pred = code_answer
    if pred is None:
        match = re.search(r"####\s*(-?[$\d.,]+)", completion)
        numbers = _GSM_NUMBER.findall(completion)
        pred = match.group(1) if match else (numbers[-1] if numbers else None)
    gold_value = _gsm_number(gold_answer)
    pred_value = _gsm_number(pred) if pred is not None else None
    if gold_value is None or pred_value is None:
        return False, pred
    return abs(gold_value - pred_value) < 1e-9, pred


@dataclass
class AuditReport:
    total: int
    agree: int
    disagreements: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        lab_only = sum(1 for d in self.disagreements if d["lab_correct"])
        return (f"audit: {len(self.disagreements)} of {self.total} verdicts disagree "
                f"({lab_only} correct only for math-verify, {len(self.disagreements) - lab_only} only for the "
                "is_equiv checker)")


def audit(task: str, golds: Sequence[str], completions: Sequence[str], verdicts: Sequence, execute_code: bool = False,
          rows: Sequence[int] | None = None) -> AuditReport:
    """Compare `verdicts` (from `rewards.score_samples`) with the second checker, sample by sample."""
    report = AuditReport(total=0, agree=0)
    for i, (gold, completion, verdict) in enumerate(zip(golds, completions, verdicts)):
        if verdict.status == "error" or not isinstance(completion, str) or gold is None:
            continue
        code_answer = verdict.pred if execute_code and "<llm-code>" in completion or (
            execute_code and "def simple_math_problem" in completion) else None
        other_correct, other_pred = second_opinion(task, str(gold), completion, code_answer)
        report.total += 1
        lab_correct = verdict.status == "correct"
        if lab_correct == other_correct:
            report.agree += 1
        else:
            report.disagreements.append({"row": rows[i] if rows is not None else i, "gold": str(gold)[-200:],
                                         "lab_pred": verdict.pred, "lab_status": verdict.status,
                                         "lab_correct": lab_correct, "audit_pred": other_pred,
                                         "audit_correct": other_correct})
    return report
