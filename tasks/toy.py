"""The toy task: multi-step +/- arithmetic word problems in the GSM8K format, generated from a seed.

Why this shape: the released checkpoints were evaluated on GSM8K with `Question: {q}\\nAnswer:`
prompts and solutions that reason step by step and end in `#### N`. The toy family is trained on
exactly that surface form, so the lab's prompt, extraction and reward code run unchanged on it;
only the arithmetic is small enough for a ~1M-parameter model to learn in minutes on a CPU.

    Question: Mia has 12 apples. She buys 5 more apples. Then she gives away 3 apples. How many apples does Mia have now?
    Answer: Mia starts with 12 apples. She buys 5: 12 + 5 = 17. She gives away 3: 17 - 3 = 14.
    #### 14

Difficulty knobs: the number of steps (`min_steps`..`max_steps` operations after the start) and the
operand size (`max_operand`). Running totals never go negative (a take-away never exceeds what is
there), so every gold answer is a non-negative integer.

Splits are disjoint by construction, for any sizes and seeds: a question belongs to `test` when a
stable hash of its text falls in one bucket out of `_TEST_BUCKETS` (one in five), to `validation`
when it falls in one bucket out of `_VALIDATION_BUCKETS` (one in twenty, never a test bucket),
otherwise to `train`; each split keeps drawing until it has `num_problems` distinct questions of
its own bucket. `validation` is for every tuning decision (GRPO recipe, learning rates, which family
to keep), so that `test` numbers are reported once per final setting. Adding it (#17) moved 5% of
the question space out of `train`; `test` is the same as before.
"""

from __future__ import annotations

import hashlib
import random

from core.errors import UserError

SPLITS = ("train", "validation", "test")
MAX_NEW_TOKENS = 96  # decoding budget for a toy solution: the longest is ~60 tokens
_TEST_BUCKETS = 5  # one question in five belongs to the test split (first hash byte % 5 == 0)
_VALIDATION_BUCKETS = 20  # one in twenty to validation (first hash byte % 20 == 1: never % 5 == 0)

# (name, pronoun) pairs and countable objects: enough variety that the model must read the names.
_PEOPLE = [("Tom", "He"), ("Mia", "She"), ("Sam", "He"), ("Ana", "She"), ("Leo", "He"), ("Zoe", "She"),
           ("Ben", "He"), ("Eva", "She"), ("Max", "He"), ("Ivy", "She")]
_OBJECTS = ["apples", "books", "coins", "cards", "pens", "shells", "stamps", "marbles", "eggs", "toys"]
# Phrasings of one step: (question clause, solution verb, sign). `{p}` pronoun, `{n}` operand, `{o}` object.
_GAINS = [("{p} buys {n} more {o}.", "buys"), ("{p} finds {n} more {o}.", "finds"),
          ("{p} gets {n} more {o} from a friend.", "gets")]
_LOSSES = [("{p} gives away {n} {o}.", "gives away"), ("{p} loses {n} {o}.", "loses"),
           ("{p} sells {n} {o}.", "sells")]


def _split_seed(split: str, seed: int) -> str:
    # random.Random(str) hashes the string with SHA-512: stable across runs, platforms and PYTHONHASHSEED.
    return f"moelab-toy/{split}/{seed}"


def split_of(question: str) -> str:
    """The split a question belongs to (stable hash bucket), whatever seed produced it."""
    first_byte = hashlib.sha256(question.encode()).digest()[0]
    if first_byte % _TEST_BUCKETS == 0:
        return "test"
    return "validation" if first_byte % _VALIDATION_BUCKETS == 1 else "train"


def _one_problem(rng: random.Random, num_steps: int, max_operand: int) -> tuple[str, str, int]:
    name, pronoun = rng.choice(_PEOPLE)
    obj = rng.choice(_OBJECTS)
    total = rng.randint(1, max_operand)
    question = [f"{name} has {total} {obj}."]
    solution = [f"{name} starts with {total} {obj}."]
    for step in range(num_steps):
        # A loss needs something to take away; otherwise gains and losses are equally likely.
        gain = total == 0 or rng.random() < 0.5
        clause, verb = rng.choice(_GAINS if gain else _LOSSES)
        operand = rng.randint(1, max_operand) if gain else rng.randint(1, min(total, max_operand))
        then = "Then " + pronoun.lower() if step > 0 else pronoun
        question.append(clause.format(p=then, n=operand, o=obj))
        new_total = total + operand if gain else total - operand
        solution.append(f"{pronoun} {verb} {operand}: {total} {'+' if gain else '-'} {operand} = {new_total}.")
        total = new_total
    question.append(f"How many {obj} does {name} have now?")
    return " ".join(question), " ".join(solution) + f"\n#### {total}", total


def make_problems(split: str, num_problems: int, seed: int = 0, min_steps: int = 1, max_steps: int = 3,
                  max_operand: int = 30) -> list[dict]:
    """`num_problems` distinct problems of `split` ("train", "validation" or "test"), deterministic in all arguments.

    Rows: `id` ("toy-{split}-{seed}-{i}"), `question`, `solution` (steps, then `#### N`), `gold` (str(N)).
    `tasks.datasets.load_problems("toy")` returns the same rows with `task: "toy"`, the checker that judges them.
    """
    if split not in SPLITS:
        raise UserError(f"toy task: split must be one of {', '.join(SPLITS)}; got {split!r}")
    if not 1 <= min_steps <= max_steps:
        raise UserError(f"toy task: need 1 <= min_steps <= max_steps; got {min_steps}..{max_steps}")
    if max_operand < 1 or num_problems < 0:
        raise UserError("toy task: max_operand must be >= 1 and num_problems >= 0")
    rng = random.Random(_split_seed(split, seed))
    rows: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < num_problems:
        attempts += 1
        if attempts > 50 * num_problems + 1000:
            raise UserError(f"toy task: cannot draw {num_problems} distinct {split} problems with "
                            f"max_operand={max_operand}, steps {min_steps}..{max_steps}; lower num_problems")
        question, solution, answer = _one_problem(rng, rng.randint(min_steps, max_steps), max_operand)
        if question in seen or split_of(question) != split:
            continue
        seen.add(question)
        rows.append({"id": f"toy-{split}-{seed}-{len(rows)}", "question": question, "solution": solution,
                     "gold": str(answer)})
    return rows
