"""The {prompt, answer} sets the study's task loss is measured on (taskloss-eval's `datasets/`).

The authors built their sets from lm-evaluation-harness few-shot contexts: for every evaluation
document in order, one `random.Random(42)` draws `k` demonstrations from the train split
(`rnd.sample(train, k)`: lm-eval's sampler under `--seed 42`), rendered as lm-eval renders them
(`doc_to_text`, a space, the target, a blank line); the prompt ends with the document's own
`doc_to_text`, and the answer is its target appended with NO leading space (taskloss-eval scores
`prompt + answer`). `gsm8k_set()` reproduces the authors' `gsm8k_4shot.json` byte for byte (all 1,319
pairs; tests/test_taskloss.py holds its sha256) from the GSM8K copy the lab ships.

- `gsm8k-4shot`: GSM8K test, 4 train demonstrations; the answer is the full solution (with the
  `<<...>>` calculator annotations and `#### N`).
- `triviaqa-4shot`: TriviaQA rc.nocontext validation, 4 train demonstrations, `Question: {q}?\\nAnswer:`
  as lm-eval's triviaqa; demonstrations show the first alias (lm-eval's rule for list targets) and the
  answer is the first alias too. The authors' `triviaqa_4shot.json` is not in their repository's
  history as stored, so this one follows the GSM8K construction rather than a file it was checked on.
  Hub (`mandarjoshi/trivia_qa`) or local files (`data_files={"train": ..., "validation": ...}`).
- `toy`: the toy task's 1,000 test problems with the same construction, 0-shot by default (the toy
  members were trained 0-shot and have a 256-token context); demonstrations from 1,000 train problems.
- `toy_facts`: the toy memorization control, the 200 facts the members were pretrained on
  (`make_facts(200, seed=0)`: configs/toy/train.yaml), the same construction, 0-shot by default;
  demonstrations, when asked for, come from the facts themselves, leaving out the document's own as lm-eval
  does when few-shot examples come from the evaluated split (configs/lm_eval_tasks/toy/toy_facts.yaml).
- any JSONL (or the authors' JSON list) with `prompt` and `answer` fields.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable, Sequence

from core.errors import UserError
from tasks.datasets import load_problems

STUDY_SEED = 42  # math_eval.sh's --seed 42, which lm-eval also uses as the few-shot seed
TASKLOSS_SETS = {"gsm8k-4shot": 4, "triviaqa-4shot": 4, "toy": 0, "toy_facts": 0}  # name -> default number of demonstrations
TRIVIAQA_HUB = ("mandarjoshi/trivia_qa", "rc.nocontext")
TOY_FACTS = {"num_problems": 200, "seed": 0}  # the facts of configs/toy/train.yaml (task.num_facts, seed)


def fewshot_pairs(docs: Sequence[Any], train: Sequence[Any], num_shots: int, seed: int,
                  text: Callable[[Any], str], target: Callable[[Any], str], same_split: bool = False) -> list[dict]:
    """lm-eval's few-shot contexts (one seeded generator, `sample(train, k)` per document in order) as
    {prompt, answer} pairs, the answer being the document's target with no leading space.

    `same_split`: the demonstrations come from the documents' own split; lm-eval then draws k + 1 and drops
    the document itself (`ContextSampler.rm_eval_doc`), so no prompt shows its own answer."""
    rng = random.Random(seed)
    pool = list(train) if not isinstance(train, list) else train
    pairs = []
    for doc in docs:
        if not num_shots:
            shots = []
        elif same_split:
            shots = [s for s in rng.sample(pool, num_shots + 1) if s != doc][:num_shots]
        else:
            shots = rng.sample(pool, num_shots)
        context = "".join(f"{text(s)} {target(s)}\n\n" for s in shots)
        pairs.append({"prompt": context + text(doc), "answer": target(doc)})
    return pairs


def _qa_text(row: dict) -> str:
    return f"Question: {row['question']}\nAnswer:"


def gsm8k_set(num_shots: int = 4, seed: int = STUDY_SEED) -> list[dict]:
    """The study's GSM8K task-loss set (1,319 pairs), from the lab's GSM8K copy."""
    return fewshot_pairs(load_problems("gsm8k", "test"), load_problems("gsm8k", "train"), num_shots, seed,
                         _qa_text, lambda row: row["solution"])


def toy_set(num_shots: int = 0, seed: int = STUDY_SEED) -> list[dict]:
    """The toy task's equivalent: its 1,000 test problems (the sweeps' and `moelab eval`'s `toy` task's)."""
    return fewshot_pairs(load_problems("toy", "test"), load_problems("toy", "train", num_problems=1000),
                         num_shots, seed, _qa_text, lambda row: row["solution"])


def toy_facts_set(num_shots: int = 0, seed: int = STUDY_SEED) -> list[dict]:
    """The toy memorization control's set: the 200 pretraining facts (`toy_facts` in `moelab eval`), in order."""
    facts = load_problems("toy_facts", "train", **TOY_FACTS)
    return fewshot_pairs(facts, facts, num_shots, seed, _qa_text, lambda row: row["solution"], same_split=True)


def _trivia_rows(split: str, data_files: dict[str, str] | None) -> Any:
    try:
        from datasets import load_dataset

        if data_files:
            if split not in data_files:
                raise UserError(f"data_files has no '{split}' split for triviaqa-4shot (give train and validation)")
            return load_dataset("json", data_files={split: str(data_files[split])}, split=split)
        return load_dataset(*TRIVIAQA_HUB, split=split)
    except UserError:
        raise
    except Exception as err:  # the datasets library raises many types when offline
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"triviaqa-4shot: cannot load {TRIVIAQA_HUB[0]} ({TRIVIAQA_HUB[1]}, {split}): {first[:200]}. "
                        f"Offline? Give local files: data_files.train=FILE data_files.validation=FILE "
                        f"(question, answer.aliases)") from None


def triviaqa_set(num_shots: int = 4, seed: int = STUDY_SEED, data_files: dict[str, str] | None = None) -> list[dict]:
    """TriviaQA's memorization contrast, built like the GSM8K set (see the module docstring)."""
    train, validation = _trivia_rows("train", data_files), _trivia_rows("validation", data_files)
    return fewshot_pairs(list(validation), list(train), num_shots, seed,
                         lambda row: f"Question: {row['question']}?\nAnswer:", lambda row: row["answer"]["aliases"][0])


def read_pairs(path: str | Path) -> list[dict]:
    """{prompt, answer} pairs from a JSONL file, or a JSON list as taskloss-eval's `datasets/` files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"taskloss dataset file not found: {path}")
    text = path.read_text()
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not JSON or JSONL ({err.msg}, line {err.lineno})") from None
    for i, row in enumerate(rows):
        if not (isinstance(row, dict) and isinstance(row.get("prompt"), str) and isinstance(row.get("answer"), str)):
            raise UserError(f"{path}: example {i} needs string 'prompt' and 'answer' fields")
    return [{"prompt": r["prompt"], "answer": r["answer"]} for r in rows]


def load_taskloss_set(dataset: str, num_shots: int | None = None, seed: int = STUDY_SEED,
                      data_files: dict[str, str] | None = None) -> tuple[str, list[dict]]:
    """(task name, pairs) for a named set (`TASKLOSS_SETS`) or a JSONL/JSON path (named by its file stem)."""
    if dataset in TASKLOSS_SETS:
        shots = TASKLOSS_SETS[dataset] if num_shots is None else num_shots
        if dataset == "gsm8k-4shot":
            return dataset, gsm8k_set(shots, seed)
        if dataset == "toy":
            return dataset, toy_set(shots, seed)
        if dataset == "toy_facts":
            return dataset, toy_facts_set(shots, seed)
        return dataset, triviaqa_set(shots, seed, data_files)
    if dataset.endswith((".jsonl", ".json")) or Path(dataset).is_file():
        return Path(dataset).stem, read_pairs(dataset)
    raise UserError(f"unknown taskloss dataset {dataset!r}: use one of {', '.join(TASKLOSS_SETS)} or a path to a "
                    f"JSONL file with 'prompt' and 'answer' fields")
