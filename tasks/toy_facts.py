"""The toy memorization control: number facts about synthetic people, answerable only by recall.

Why: the study contrasts reasoning tasks (GSM8K) with memorization tasks (TriviaQA) and finds that
memorization keeps improving with sparsity while reasoning saturates. The toy arithmetic task alone
cannot show that contrast. These facts give the toy corpus its TriviaQA: each made-up person has one
number attribute, drawn at random, so no rule predicts it; the model either stored it during
pretraining or guesses (chance ~1%). Same surface form and checker as the reasoning task:

    Question: What is the locker number of Kavo Trelin?
    Answer: The locker number of Kavo Trelin is 57.
    #### 57

The facts are the world of one training seed: `make_facts(n, seed)` is deterministic, and the
members trained with `task.num_facts = n` at `seed` saw exactly these rows (`task.fact_share` of
every batch). Memorization is measured on the same questions, as TriviaQA asks what pretraining saw.
"""

from __future__ import annotations

import random

from core.errors import UserError

SPLITS = ("train",)  # one split: memorization is asked about what was seen
ATTRIBUTES = ("locker number", "house number", "lucky number", "jersey number")
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr", "kl", "st"]
_VOWELS = ["a", "e", "i", "o", "u"]
_CODAS = ["", "", "n", "r", "l", "s"]
MAX_VALUE = 99


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _name(rng: random.Random) -> str:
    first = "".join(_syllable(rng) for _ in range(2)).capitalize()
    last = "".join(_syllable(rng) for _ in range(2)).capitalize()
    return f"{first} {last}"


def make_facts(num_facts: int, seed: int = 0) -> list[dict]:
    """`num_facts` facts, one per distinct synthetic person, deterministic in (num_facts, seed); the first
    n facts of a larger draw are the n facts of a smaller one.

    Rows like the reasoning task's: `id` ("toyfact-{seed}-{i}"), `question`, `solution` (the sentence,
    then `#### N`), `gold` (str(N), 1..99).
    """
    if num_facts < 0:
        raise UserError(f"toy facts: num_facts must be >= 0; got {num_facts}")
    rng = random.Random(f"moelab-toy-facts/{seed}")
    rows, seen = [], set()
    while len(rows) < num_facts:
        person = _name(rng)
        attribute = rng.choice(ATTRIBUTES)
        value = rng.randint(1, MAX_VALUE)
        if person in seen:
            continue
        seen.add(person)
        rows.append({"id": f"toyfact-{seed}-{len(rows)}", "question": f"What is the {attribute} of {person}?",
                     "solution": f"The {attribute} of {person} is {value}.\n#### {value}", "gold": str(value)})
    return rows
