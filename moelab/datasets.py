"""Problems with gold answers: GSM8K (shipped), MATH (hub), the toy task (generated), local JSONL.

Every loader returns the same rows, so prompts, generation, scoring and GRPO never branch on the
dataset:  {"id": str, "question": str, "solution": raw dataset answer field, "gold": final answer}.
`solution` keeps the dataset's own text (a GSM8K solution ending in `#### N`, a MATH solution with
`\\boxed{}`) because k-shot prompts show it and the rewards accept it as gold too.

GSM8K's test and train files ship with the lab (MIT licence, `moelab/data/gsm8k/LICENSE`), identical
to the hub's `openai/gsm8k` main config, so nothing needs the network. MATH comes from the hub
(`DigitalLearningGmbH/MATH-lighteval`, `HuggingFaceH4/MATH-500`) or a local JSONL.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from moelab.errors import UserError
from rewards.extract import final_boxed  # the checker's own boxed parser: gold and predictions agree

DATA_DIR = Path(__file__).resolve().parent / "data"
HUB_DATASETS = {
    "math": ("DigitalLearningGmbH/MATH-lighteval", "default"),
    "math500": ("HuggingFaceH4/MATH-500", "default"),
    "gsm8k-hub": ("openai/gsm8k", "main"),
}
DATASET_NAMES = ["gsm8k", "toy", *HUB_DATASETS]


def gsm8k_final_answer(solution: str) -> str:
    """The number after GSM8K's `####`, thousands separators removed (the dataset's own convention)."""
    tail = solution.rsplit("####", 1)[-1].strip()
    return tail.replace(",", "").replace("$", "").strip()


def _row(pid: str, question: str, solution: str, gold: str | None = None) -> dict:
    if gold is None:
        gold = gsm8k_final_answer(solution) if "####" in solution else (final_boxed(solution) or solution.strip())
    return {"id": pid, "question": question, "solution": solution, "gold": str(gold)}


def _read_jsonl(path: Path, prefix: str) -> list[dict]:
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
        question = raw.get("question", raw.get("problem"))
        solution = raw.get("solution", raw.get("answer"))
        if question is None or solution is None:
            raise UserError(f"{path}:{line_no}: a problem needs 'question' (or 'problem') and 'answer' "
                            f"(or 'solution'); found keys {sorted(raw)}")
        pid = str(raw.get("id", raw.get("problem_id", f"{prefix}-{line_no - 1}")))
        gold = raw.get("gold")
        if gold is None and "answer" in raw and "solution" in raw:
            gold = raw["answer"]  # MATH-500 style: a separate bare final answer
        rows.append(_row(pid, str(question), str(solution), None if gold is None else str(gold)))
    return rows


def _from_hub(name: str, split: str) -> list[dict]:
    hub_id, config = HUB_DATASETS[name]
    try:
        from datasets import load_dataset

        data = load_dataset(hub_id, config, split=split)
    except Exception as err:  # the datasets library raises many types when offline
        raise UserError(f"cannot load {hub_id} ({split}) from the hub: {str(err).splitlines()[0] if str(err) else err}. "
                        f"Offline? Export it to JSONL where there is internet and pass the file path as the dataset") \
            from None
    rows = []
    for i, raw in enumerate(data):
        question = raw.get("question", raw.get("problem"))
        solution = raw.get("answer") if name == "gsm8k-hub" else raw.get("solution")
        gold = raw.get("answer") if name == "math500" else None
        rows.append(_row(f"{name}-{split}-{i}", question, solution, gold))
    return rows


def load_problems(dataset: str, split: str = "test", limit: int | None = None,
                  shuffle_seed: int | None = None, **toy_options: int) -> list[dict]:
    """Rows `{id, question, solution, gold}` of `dataset` (a name in DATASET_NAMES or a JSONL path).

    `shuffle_seed` shuffles before `limit` (the study shuffled GSM8K test with seed 0); `toy_options`
    go to the toy generator (num_problems, seed, min_steps, max_steps, max_operand).
    """
    if dataset == "gsm8k":
        path = DATA_DIR / "gsm8k" / f"{split}.jsonl"
        if not path.is_file():
            raise UserError(f"gsm8k has splits 'train' and 'test'; got split={split!r}")
        rows = _read_jsonl(path, f"gsm8k-{split}")
    elif dataset == "toy":
        from checkpoints_index.toy.task import make_problems

        options = {"num_problems": 1000 if split == "test" else 20000, **toy_options}
        rows = make_problems(split, **options)
    elif dataset in HUB_DATASETS:
        rows = _from_hub(dataset, split)
    elif dataset.endswith(".jsonl") or Path(dataset).is_file():
        path = Path(dataset)
        if not path.is_file():
            raise UserError(f"dataset file not found: {dataset}")
        rows = _read_jsonl(path, re.sub(r"\W+", "_", path.stem))
    else:
        raise UserError(f"unknown dataset '{dataset}': use one of {', '.join(DATASET_NAMES)} or a path to a JSONL "
                        f"file with 'question' and 'answer' fields")
    if shuffle_seed is not None:
        rows = list(rows)
        random.Random(shuffle_seed).shuffle(rows)
    return rows[:limit] if limit is not None else rows
