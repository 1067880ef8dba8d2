"""Scoring rules: whose verdict a number is. `lab` (the default), `study` and `study_grpo`.

A researcher comparing the lab's numbers with the paper's must compare the same measurement, so the
study's two verdicts are available exactly, beside the lab's own (rewards/README.md, "Scoring rules"):

- `lab`: the lab's extraction cascade and math-verify equivalence (`rewards.extract`,
  `rewards.equivalence`), code answers executed when asked, votes clustered by value.
- `study`: the study's test-time compute evaluator (`llmonk/evaluate/rewarding/gsm8k_math.py` of
  rioyokotalab/optimal-sparsity). GSM8K and toy: the *first* match of the case-insensitive
  `(?:####\\s*|Answer:?\\s*|The answer is\\s*)(-?\\d+(?:\\.\\d+)?)` in the sample and in the raw gold
  solution; MATH: Minerva's `Final Answer: The final answer is X. I hope it is correct.` normalised by
  `normalize_final_answer`, the gold being the normalised last `\\boxed{}` of the solution. Correct iff
  the two strings are equal or Minerva's `is_equiv` says so (lm-eval 8b41f92, `rewards.minerva`).
  No code is executed; a sample without an answer is `no_answer` and never votes; votes count
  extracted strings (`18` and `18.0` are two answers, as in the study).
- `study_grpo`: the study's GRPO reward (`post-training/verl/utils/reward_score/gsm8k.py`, the same body
  as `math.py`): an `<llm-code>` block is run and its last line evaluated; else, if `def` appears
  anywhere, the text after the last `\\ndef` is run and `simple_math_problem()` called; a program that
  fails falls through to `math_verify.parse(whole response)`; reward 1 iff `verify(pred, parse(gold))`
  (prediction first, as the study called it), the gold as verl stored it: the number after `####` for
  GSM8K, the bare LaTeX inside the last box for MATH. Departure: programs run in the lab's sandbox
  (`rewards.sandbox`, 3 s) instead of a bare `exec`.

Written from the rules' description above, not copied from the authors' code; tests hold both to the
verdicts of the authors' code run outside the project (tests/data/study_verdicts.jsonl).
"""

from __future__ import annotations

import re

RULES = ("lab", "study", "study_grpo")
NO_ANSWER = None

_STUDY_GSM8K_RE = re.compile(r"(?:####\s*|Answer:?\s*|The answer is\s*)(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_VERL_GSM8K_GOLD_RE = re.compile(r"#### (\-?[0-9\.\,]+)")  # verl's examples/data_preprocess/gsm8k.py
_MINERVA_INVALID = "[invalidanswer]"


def resolve_rule(name: object) -> str:
    """`name` if it is a scoring rule; otherwise ValueError naming the choices."""
    if name not in RULES:
        raise ValueError(f"unknown scoring rule {name!r}; expected one of {', '.join(RULES)} "
                         f"(rewards/README.md, 'Scoring rules')")
    return str(name)


# ----------------------------------------------------------------------------------- rule=study


def study_gsm8k_answer(text: str) -> str | None:
    """The study's GSM8K answer: the first `####` / `Answer:` / `The answer is` number, as written."""
    match = _STUDY_GSM8K_RE.search(text)
    return match.group(1) if match else NO_ANSWER


def _unbox(boxed: str) -> str:
    """The study's own un-boxing (it also reads `\\fbox{}`; an unknown form is no answer)."""
    for left in ("\\boxed ", "\\boxed{", "\\fbox{"):
        if left in boxed:
            inner = boxed[len(left):]
            return inner if left.endswith(" ") else inner[:-1]
    return _MINERVA_INVALID


def study_math_answer(text: str) -> str | None:
    """The study's MATH answer: Minerva's final-answer line, normalised; None without one."""
    from rewards.minerva import get_unnormalized_answer, normalize_final_answer

    answer = get_unnormalized_answer(text)
    return NO_ANSWER if answer == _MINERVA_INVALID else normalize_final_answer(answer)


def study_math_gold(solution: str) -> str | None:
    """The study's MATH gold: the normalised content of the solution's last box (a bare answer as is)."""
    from rewards.minerva import last_boxed_only_string, normalize_final_answer

    boxed = last_boxed_only_string(solution)
    if boxed is None:  # the lab's bare golds (`gold` column): the box the study would have read
        boxed = last_boxed_only_string("\\boxed{" + solution.strip() + "}")
    inner = _unbox(boxed)
    return NO_ANSWER if inner == _MINERVA_INVALID else normalize_final_answer(inner)


def study_answer(task: str, text: str, is_gold: bool = False) -> str | None:
    """What `rule=study` reads from a sample (or, with `is_gold`, from the raw gold solution)."""
    if task == "math":
        return study_math_gold(text) if is_gold else study_math_answer(text)
    answer = study_gsm8k_answer(text)
    if answer is None and is_gold and re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*", text):
        return text.strip()  # a bare gold number (the lab's `gold` column) reads as the study's `#### N`
    return answer


# ------------------------------------------------------------------------------ rule=study_grpo


def verl_gold(task: str, solution: str) -> str:
    """The gold verl stored for the study's GRPO: GSM8K the `#### N` number without commas, MATH the
    bare LaTeX in the last box. A gold that is already bare (the lab's `gold` column) is kept."""
    if task == "math":
        from rewards.minerva import last_boxed_only_string

        boxed = last_boxed_only_string(solution)
        return solution.strip() if boxed is None else _unbox(boxed)
    match = _VERL_GSM8K_GOLD_RE.search(solution)
    return match.group(1).replace(",", "") if match else solution.strip()


def llm_code_block(text: str) -> str | None:
    """The study's `<llm-code>` program: the first block, stripped (None when there is none)."""
    if "<llm-code>" not in text:
        return None
    match = re.search(r"<llm-code>(.*?)</llm-code>", text, re.DOTALL)
    return match.group(1).strip() if match else None


def tinygsm_program(text: str) -> str | None:
    """The study's TinyGSM program: `def` + everything after the last `\\ndef` (None without `def`)."""
    if "def" not in text:
        return None
    return "def" + text.split("\ndef")[-1]


def study_grpo_program(completion: str, stage: int) -> tuple[str, str] | None:
    """The program the study's GRPO reward ran at `stage` (0: the `<llm-code>` block, its last line
    evaluated; 1: TinyGSM, `simple_math_problem()` called, tried when stage 0 gave no answer), with its
    answer convention (`rewards.sandbox`), or None when that stage has no program.

    Programs are separate from judging (`study_grpo_judge`) so that they run before, and apart from,
    anything that knows the gold: the scorer sends them to the sandbox as programs alone."""
    if stage == 0:
        block = llm_code_block(completion)
        return (block, "study_last_line") if block is not None else None
    program = tinygsm_program(completion)
    return (program, "study_function") if program is not None else None


def study_grpo_judge(completion: str, answer: str | None, gold: str, parse_timeout_s: int = 5) -> dict:
    """The study's GRPO reward once its programs have run: `answer` is the first program's answer (None
    when none ran or none answered; then the whole response is parsed), judged by math-verify's
    `parse`/`verify` in the study's argument order (runs math-verify: call it in a checker process).

    Returns {status, pred, detail}: status `correct` / `wrong` / `no_answer` (nothing parsed)."""
    from math_verify import parse, verify

    pred = parse(answer if answer is not None else completion, parsing_timeout=parse_timeout_s)
    gold_parsed = parse(gold, parsing_timeout=parse_timeout_s)
    correct = bool(verify(pred, gold_parsed))
    shown = str(pred[-1]) if pred else None
    status = "correct" if correct else ("wrong" if pred else "no_answer")
    return {"status": status, "pred": shown,
            "detail": "" if gold_parsed else "math-verify parsed nothing from the gold"}
