"""Neighbouring tools' sample files as the lab's scored-samples table (`inference.ttc.aggregate`).

Two formats besides the lab's own (`problem_id, sample_idx, answer, correct, ...`):

- lm-eval's `--log_samples` files (`samples_<task>_<date>.jsonl`, what `moelab eval` writes): one line
  per (document, filter) with the raw responses in `resps[0]` (several with `repeats`) and the
  filtered ones in `filtered_resps`. Without a rule, one row per document and filter chosen, correct
  iff lm-eval's own metric (`exact_match`, ...) is positive, so pass@1 equals lm-eval's number; this
  needs one response per document (lm-eval's metric with repeats is a vote over them). With `rule`,
  every response is its own row, re-scored by the lab (`rewards`) against the document's target, so
  pass@k, majority@k etc. work on lm-eval's repeats.
- Reward-labelled rows as verl and open-r1 dump them (`prompt`, `completion`/`response`, and
  `reward`/`score`/`acc`): correct iff the reward is at least 0.5 (binary rewards), the problem
  named by the prompt, samples numbered in file order; `answer` or `pred` when present.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from core.errors import UserError

FORMATS = ("auto", "table", "lm-eval", "rewarded")
_REWARD_FIELDS = ("reward", "score", "acc")


def read_jsonl_rows(path) -> list[dict]:
    """Every non-blank line of a JSONL file as a dict; a bad line is one error naming its number."""
    import json
    from pathlib import Path

    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: not JSON ({err.msg})") from None
    return rows


def detect_format(rows: list[dict]) -> str:
    """`table` (the lab's), `lm-eval` or `rewarded`, from the first row's fields."""
    first = rows[0] if rows else {}
    if "doc_id" in first and "resps" in first:
        return "lm-eval"
    if "problem_id" in first and "correct" in first:
        return "table"
    if "prompt" in first and any(f in first for f in _REWARD_FIELDS):
        return "rewarded"
    return "table"


def lm_eval_rows(rows: list[dict], *, task: str | None = None, rule: str | None = None,
                 filter_name: str | None = None, where: str = "samples") -> list[dict]:
    """lm-eval log-samples lines -> scored-samples rows (see the module docstring)."""
    filters = list(dict.fromkeys(str(r.get("filter")) for r in rows))
    chosen = filter_name or filters[0]
    if chosen not in filters:
        raise UserError(f"{where}: no lm-eval filter {chosen!r}; the file has {', '.join(filters)}")
    lines = [r for r in rows if str(r.get("filter")) == chosen]
    if rule is None:
        out = []
        for line in lines:
            responses = line.get("filtered_resps") or [None]
            if len(line.get("resps", [[None]])[0]) != 1:
                raise UserError(f"{where}: documents hold several responses (lm-eval repeats): its per-document "
                                f"metric is not per sample; re-score them with --rule lab (or study) and --task")
            metric = (line.get("metrics") or ["exact_match"])[0]
            if metric not in line:
                raise UserError(f"{where}: line for doc {line.get('doc_id')} has no metric {metric!r}")
            out.append({"problem_id": str(line["doc_id"]), "sample_idx": 0, "correct": float(line[metric]) > 0,
                        "answer": None if responses[0] is None else str(responses[0])})
        return out
    if task is None:
        raise UserError(f"{where}: re-scoring lm-eval samples with --rule needs --task (gsm8k, math or toy)")
    from rewards import score_samples

    golds, completions, problems, index = [], [], [], []
    for line in lines:
        for i, response in enumerate(line["resps"][0]):
            golds.append(str(line.get("target")))
            completions.append(str(response))
            problems.append(str(line["doc_id"]))
            index.append(i)
    verdicts = score_samples(task, golds, completions, problem_ids=problems, rule=rule)
    return [{"problem_id": p, "sample_idx": i, "answer": v.cluster, "correct": v.status == "correct"}
            for p, i, v in zip(problems, index, verdicts)]


def rewarded_rows(rows: list[dict], where: str = "samples") -> list[dict]:
    """verl / open-r1 style reward-labelled rows -> scored-samples rows."""
    reward_field = next((f for f in _REWARD_FIELDS if f in rows[0]), None)
    if reward_field is None:
        raise UserError(f"{where}: rows need one of {', '.join(_REWARD_FIELDS)}")
    seen: Counter[str] = Counter()
    out = []
    for number, row in enumerate(rows, 1):
        if row.get(reward_field) is None or row.get("prompt") is None:
            raise UserError(f"{where}: row {number} lacks 'prompt' or {reward_field!r}")
        prompt = row["prompt"] if isinstance(row["prompt"], str) else repr(row["prompt"])
        problem = str(row.get("problem_id") or hashlib.sha256(prompt.encode()).hexdigest()[:16])
        answer = row.get("answer", row.get("pred"))
        out.append({"problem_id": problem, "sample_idx": seen[problem], "correct": float(row[reward_field]) >= 0.5,
                    "answer": None if answer is None else str(answer),
                    **({"model": row["model"]} if "model" in row else {})})
        seen[problem] += 1
    return out


def to_scored_rows(rows: list[dict], fmt: str = "auto", *, task: str | None = None, rule: str | None = None,
                   filter_name: str | None = None, where: str = "samples") -> list[dict]:
    """Rows of any supported format -> the lab's scored-samples rows (the lab's own pass through)."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if not rows:
        raise UserError(f"{where}: no rows")
    fmt = detect_format(rows) if fmt == "auto" else fmt
    if fmt == "lm-eval":
        return lm_eval_rows(rows, task=task, rule=rule, filter_name=filter_name, where=where)
    if fmt == "rewarded":
        return rewarded_rows(rows, where)
    return rows
