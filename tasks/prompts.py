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
from typing import Any, Callable, Sequence

STUDY_STOP_STRINGS = ["Question:", "Q:"]
# the styles `render_prompt` takes (GRPO's data.prompt_style); the sweep's are PROMPT_STYLES below
RENDER_STYLES = ("qa", "chat")
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


PROMPT_STYLES = ("qa", "minerva")
# Minerva's MATH examples (Lewkowycz et al. 2022, appendix D.2) as lm-eval 8b41f92 lists them, which is
# the study's `MATH_COT_PROMPT` (test-time-compute/llmonk/generate/prompts.py): its 2-shot prompt is the
# first two, its 4-shot prompt all four. Verbatim, typos included (the stray `}` in the first problem).
MINERVA_SHOTS: list[dict] = [
    {
        "problem": "Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}",
        "solution": "The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so $x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, which gives $x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.\nFinal Answer: The final answer is $[2,5)$. I hope it is correct.",
    },
    {
        "problem": "If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find $\\det (\\mathbf{A} \\mathbf{B}).$",
        "solution": "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) = (2)(12) = \\boxed{24}.$\nFinal Answer: The final answer is $24$. I hope it is correct.",
    },
    {
        "problem": "Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, how many times must Terrell lift them in order to lift the same total weight?",
        "solution": "If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of $2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:\n\\begin{align*}\n30n&=480\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}\nFinal Answer: The final answer is $16$. I hope it is correct.",
    },
    {
        "problem": "If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\n6y-9x &=b.\n\\end{align*}has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.",
        "solution": "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}=\\boxed{-\\frac{2}{3}}.$$\nFinal Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.",
    },
]


def format_prompt(question: str, style: str = "qa", shots: Sequence[dict] = ()) -> str:
    """The study's completion prompts, with `shots` (rows with question/solution) in front:
    `qa` = `Question: {q}\\nAnswer:` (GSM8K), `minerva` = `Problem:\\n{q}\\n\\nSolution:` (MATH)."""
    if style == "qa":
        prefix = "".join(f"Question: {s['question']}\nAnswer: {s['solution']}\n\n" for s in shots)
        return f"{prefix}Question: {question}\nAnswer:"
    if style == "minerva":
        prefix = "".join(f"Problem:\n{s['question']}\n\nSolution:\n{s['solution']}\n\n" for s in shots)
        return f"{prefix}Problem:\n{question}\n\nSolution:"
    raise ValueError(f"format_prompt renders the styles {PROMPT_STYLES}; use chat_prompt for {style!r}")


def minerva_shots(num_shots: int) -> list[dict]:
    """The study's MATH few-shot examples: the first `num_shots` (0, 2 or 4) of Minerva's four."""
    if num_shots not in (0, 2, 4):
        raise ValueError(f"Minerva prompts are 0-, 2- or 4-shot (the study's MATH prompts); got {num_shots}")
    return [{"question": s["problem"], "solution": s["solution"]} for s in MINERVA_SHOTS[:num_shots]]


def sample_shots(train_rows: Sequence[dict], num_shots: int, seed: int) -> list[dict]:
    """`num_shots` train examples drawn with a seed: one set for every problem."""
    if num_shots <= 0:
        return []
    return random.Random(seed).sample(list(train_rows), num_shots)


def shots_per_problem(train_rows: Sequence[dict], num_shots: int, seed: int, num_problems: int) -> list[list[dict]]:
    """A fresh draw of `num_shots` train examples for each problem, from one generator seeded once:
    the study's GSM8K generator (`random.seed(seed)`, then `random.sample(train, k)` per problem) and
    lm-eval's default sampler both draw per problem."""
    if num_shots <= 0:
        return [[] for _ in range(num_problems)]
    rng, rows = random.Random(seed), list(train_rows)
    return [rng.sample(rows, num_shots) for _ in range(num_problems)]


SHOT_MODES = ("per_problem", "fixed")


def prompt_shots(style: str, num_shots: int, mode: str, seed: int, num_problems: int,
                 load_train: Callable[[], Sequence[dict]]) -> tuple[list[list[dict]], str]:
    """The examples in front of each of `num_problems` prompts, and the template's name (part of every
    sample's address): Minerva's fixed examples for `minerva`; for `qa`, train rows (`load_train`, called
    only when needed) drawn per problem (`shots_per_problem`) or once for all (`sample_shots`)."""
    if style == "minerva":
        return [minerva_shots(num_shots)] * num_problems, f"minerva-{num_shots}shot"
    if num_shots <= 0:
        return [[]] * num_problems, "qa-0shot"
    train = load_train()
    shots = (shots_per_problem(train, num_shots, seed, num_problems) if mode == "per_problem"
             else [sample_shots(train, num_shots, seed)] * num_problems)
    return shots, f"qa-{num_shots}shot-{mode}-seed{seed}"


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
    raise ValueError(f"prompt style must be one of {RENDER_STYLES}; got {style!r}")
