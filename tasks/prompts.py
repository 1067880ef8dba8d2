"""The study's two prompt formats, in one place so sweeps, GRPO and the toy task agree.

- `qa` (test-time compute sweeps, lm-eval style): `Question: {q}\\nAnswer:`, zero-shot or with k
  seeded train examples in front, each `Question: ...\\nAnswer: <full solution>\\n\\n`.
  The study stops generation at `Question:` and `Q:`.
- `chat` (GRPO, as the study's verl run): the raw question as one user message through the
  tokenizer's chat template, no instruction suffix. A tokenizer without a template gets
  `CHAT_TEMPLATE`, which renders the same `Question:/Answer:` text (the toy family ships it too).
"""

from __future__ import annotations

import random
from typing import Any, Sequence

STUDY_STOP_STRINGS = ["Question:", "Q:"]
PROMPT_STYLES = ["qa", "chat"]
# The one chat template: for tokenizers that ship none (the llm-jp base tokenizer may not) and inside
# every toy member. The raw question is the user turn, rendered exactly like the study's zero-shot QA
# prompt, so GRPO's chat prompts and the sweeps' QA prompts look identical to the model.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}Question: {{ message['content'] }}\nAnswer:"
    "{% elif message['role'] == 'assistant' %} {{ message['content'] }}{{ eos_token }}\n\n"
    "{% else %}{{ message['content'] }}\n\n{% endif %}"
    "{% endfor %}"
)


def format_prompt(question: str, style: str = "qa", shots: Sequence[dict] = ()) -> str:
    """The study's `Question: {q}\\nAnswer:` prompt, with `shots` (rows with question/solution) in front."""
    if style != "qa":
        raise ValueError(f"format_prompt renders the 'qa' style; use chat_prompt for {style!r}")
    prefix = "".join(f"Question: {s['question']}\nAnswer: {s['solution']}\n\n" for s in shots)
    return f"{prefix}Question: {question}\nAnswer:"


def sample_shots(train_rows: Sequence[dict], num_shots: int, seed: int) -> list[dict]:
    """`num_shots` train examples drawn with a seed (the study drew them at random per run)."""
    if num_shots <= 0:
        return []
    return random.Random(seed).sample(list(train_rows), num_shots)


def chat_messages(question: str) -> list[dict]:
    """The GRPO prompt: the raw question as the only user message."""
    return [{"role": "user", "content": question}]


def chat_prompt(question: str, tokenizer: Any) -> str:
    """`chat_messages` rendered through the tokenizer's chat template (fallback template if it has none)."""
    if getattr(tokenizer, "chat_template", None) is None:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer.apply_chat_template(chat_messages(question), tokenize=False, add_generation_prompt=True)


def render_prompt(question: str, style: str, tokenizer: Any = None, shots: Sequence[dict] = ()) -> str:
    """One entry point for both styles (tokenizer needed for `chat`)."""
    if style == "qa":
        return format_prompt(question, shots=shots)
    if style == "chat":
        return chat_prompt(question, tokenizer)
    raise ValueError(f"prompt style must be one of {PROMPT_STYLES}; got {style!r}")
