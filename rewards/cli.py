"""`moelab score`: verdicts for a JSONL file of completions, row by row, never dying on bad rows.

    moelab score --task gsm8k --in samples.jsonl --out scored.jsonl execute_code=true deadline_s=3
    moelab score --task math --in samples.jsonl --out scored.jsonl --audit
    moelab score --task gsm8k --in samples.jsonl --out scored.jsonl rule=study   # the study's TTC verdicts
    moelab score --task code --in humaneval_samples.jsonl --out scored.jsonl      # programs run with their tests

`--task` is a checker task, never a dataset name: the input is a file of completions, which does not
say its dataset, and this layer sits below the datasets table (`tasks.datasets.DATASETS`), so
MATH-500 completions are scored with `--task math`.

Each input row holds at least `completion` and `gold` (field names configurable); other fields
pass through. Each output row adds `status`, `reward` (1.0 iff correct), `pred`, `cluster` (and
`detail` when there is something to say), `rule`, and what `moelab aggregate` reads: `answer` (the
vote key), `correct`, `problem_id` and `sample_idx` (kept when the input has them, else the order
within the problem), so `moelab score ... && moelab aggregate OUT.jsonl` works on the same file. Rows keep their order; a line that is not JSON, or a
row missing a field, is reported on stderr with its line number and scored `error`.
`--audit` also runs the independent checker (`rewards.audit`) and writes the disagreements.

`--task code`: each row is a program and its tests, as HumanEval and MBPP samples are written:
`{prompt, completion, test, entry_point}` (the program is prompt + completion, the tests `test` +
`check(entry_point)`) or `{completion, test_list}` (MBPP's asserts; a `prompt` there is prose and is not
prepended), or a `gold` field holding the tests.
Programs always run (in the sandbox, rewards/README.md); `correct` means they ran to the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.config import config_field, describe_fields
from core.errors import UserError
from rewards.extract import TASKS
from rewards.rules import RULES


@dataclass
class ScoreOptions:
    """Scorer options, set as key=value after the command."""

    execute_code: bool = config_field(False, "execute `simple_math_problem()` / <llm-code> answers in the sandbox "
                                      "(the study did, for the released checkpoints' GSM8K answers)")
    rule: Literal[RULES] = config_field(
        "lab", "whose verdict (rewards/rules.py): lab, study (the study's TTC evaluator), "
        "study_grpo (the study's GRPO reward); the study's rules read their gold from the raw "
        "solution when the gold field holds one")
    strict: bool = config_field(False, "GSM8K: the study's strict rule (first `####`/`Answer:`/`The answer is` "
                                "followed by a number, else no answer) instead of the flexible extraction")
    deadline_s: float = config_field(5.0, "hard per-verdict deadline in seconds (the checker is killed past it)",
                                     above=0)
    code_timeout_s: float = config_field(3.0, "wall-clock limit for one program (the study used 3 s)", above=0)
    num_workers: int = config_field(0, "checker processes (0: one per CPU core)", at_least=0)
    completion_field: str = config_field("completion", "input field holding the completion (string or chat list)")
    gold_field: str = config_field("gold", "input field holding the gold answer (raw dataset field or bare)")
    problem_id_field: str = config_field("problem_id", "input field naming the problem, for answer clusters "
                                         "(rows without it are grouped by gold answer)")
    prompt_field: str = config_field("prompt", "task=code: field put before the completion of HumanEval-style rows "
                                     "(those with an entry_point: their completions continue the prompt); MBPP rows, "
                                     "whose prompt is prose, use the completion alone")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS,
                        help="checker rules to use (a dataset's own: tasks.datasets.DATASETS, e.g. math500 -> math)")
    parser.add_argument("--in", dest="input", required=True, metavar="IN.jsonl", help="completions to score")
    parser.add_argument("--out", required=True, metavar="OUT.jsonl", help="where to write the scored rows")
    parser.add_argument("--audit", action="store_true", help="also run the independent is_equiv-style checker and "
                        "report where it disagrees with math-verify")
    parser.add_argument("--audit-out", default=None, metavar="PATH",
                        help="disagreements as JSONL (default: OUT with suffix .audit.jsonl)")
    options = "; ".join(f"{key} ({kind}): {text}" for key, kind, text in describe_fields(ScoreOptions))
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"scorer options: {options}")


def code_tests(row: dict, options) -> str | None:
    """task=code: the tests that decide a row's program: its gold field, else HumanEval's `test` +
    `check(entry_point)` (what lm-eval's humaneval task appends), else MBPP's `test_list` asserts."""
    if row.get(options.gold_field) is not None:
        return str(row[options.gold_field])
    if row.get("test") is not None:
        return f"{row['test']}\ncheck({row['entry_point']})" if row.get("entry_point") else str(row["test"])
    if isinstance(row.get("test_list"), list):
        return "\n".join(str(test) for test in row["test_list"])
    return None


def read_rows(path: Path, options, code: bool = False) -> tuple[list[dict | None], list[str]]:
    """Every line as a dict, or None with a problem message (1-based line numbers). `code`: rows are
    programs with tests (`code_tests`), not completions with gold answers."""
    rows: list[dict | None] = []
    problems: list[str] = []
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                rows.append(None)
                problems.append(f"line {number}: not JSON ({err.msg})")
                continue
            if not isinstance(row, dict):
                rows.append(None)
                problems.append(f"line {number}: a row must be a JSON object")
                continue
            missing = [f for f in (options.completion_field, options.gold_field) if row.get(f) is None]
            if code:
                missing = [f for f in missing if f != options.gold_field]
                if code_tests(row, options) is None:
                    missing.append(f"{options.gold_field} (or test + entry_point, or test_list)")
            row["_line"] = number
            rows.append(row)
            problems.append(f"line {number}: missing field {', '.join(missing)}" if missing else "")
    return rows, problems


def run(args: argparse.Namespace) -> int:
    from core.config import load_config

    options = load_config(None, list(args.overrides), schema=ScoreOptions)
    if args.task == "code" and args.audit:
        raise UserError("--audit has no second checker for --task code: the tests are the verdict")
    source, target = Path(args.input), Path(args.out)
    if not source.is_file():
        raise UserError(f"--in: file not found: {source}")
    rows, problems = read_rows(source, options, code=args.task == "code")
    for problem in problems:
        if problem:
            print(f"warning: {problem}: scored as error", file=sys.stderr)

    good = [i for i, row in enumerate(rows) if row is not None and not problems[i]]
    completions = [rows[i][options.completion_field] for i in good]
    golds = [rows[i].get(options.gold_field) for i in good]
    if args.task == "code":
        completions = [(str(rows[i].get(options.prompt_field) or "") if rows[i].get("entry_point") else "")
                       + str(completion) for i, completion in zip(good, completions)]
        golds = [code_tests(rows[i], options) for i in good]
    fallback = "task_id" if args.task == "code" else None  # HumanEval/MBPP samples name their problem so
    ids = [str(rows[i].get(options.problem_id_field) or rows[i].get(fallback or "", None) or f"gold:{golds[n]}")
           for n, i in enumerate(good)]
    id_of = dict(zip(good, ids))

    from tqdm import tqdm

    from rewards.scorer import STATUSES, Scorer, Verdict

    with tqdm(total=len(good), desc="scoring", unit="row", disable=len(good) < 200, file=sys.stderr) as bar:
        def progress(fraction: float) -> None:
            bar.update(max(0, int(fraction * len(good)) - bar.n))  # update() keeps tqdm's rate limiting

        with Scorer(num_workers=options.num_workers or None, deadline_s=options.deadline_s,
                    code_timeout_s=options.code_timeout_s) as scorer:
            verdicts = scorer.score(args.task, golds, completions, ids, execute_code=options.execute_code,
                                    strict=options.strict, rule=options.rule, progress=progress)

    by_row: dict[int, Verdict] = dict(zip(good, verdicts))
    counts: Counter[str] = Counter()
    seen: Counter[str] = Counter()  # sample_idx by order within a problem, where the input has none
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        for i, row in enumerate(rows):
            verdict = by_row.get(i) or Verdict("error", 0.0, None, None, problems[i])
            record = {k: v for k, v in (row or {"line": _line_of(problems[i])}).items() if k != "_line"}
            record.update(status=verdict.status, reward=verdict.reward, pred=verdict.pred, cluster=verdict.cluster)
            # `moelab aggregate` input as well: answer (the vote key), correct, problem_id, sample_idx
            problem = id_of.get(i) or str(record.get(options.problem_id_field,
                                                     "gold:" + str(record.get(options.gold_field))))
            record.setdefault("problem_id", problem)
            record.setdefault("sample_idx", seen[problem])
            seen[problem] += 1
            record.update(answer=verdict.cluster, correct=verdict.status == "correct", rule=options.rule)
            if verdict.detail:
                record["detail"] = verdict.detail
            counts[verdict.status] += 1
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    total = sum(counts.values())
    summary = ", ".join(f"{status} {counts[status]}" for status in STATUSES)
    print(f"scored {total} rows -> {target}: {summary}; accuracy {counts['correct'] / max(1, total):.4f}",
          file=sys.stderr)

    if args.audit:
        _run_audit(args, options, rows, good, golds, completions, verdicts, target)
    return 0


def _line_of(problem: str) -> int | None:
    try:
        return int(problem.split(":", 1)[0].split()[1])
    except (IndexError, ValueError):
        return None


def _run_audit(args, options, rows, good, golds, completions, verdicts, target: Path) -> None:
    from rewards.audit import audit

    texts = [c if isinstance(c, str) else json.dumps(c) for c in completions]
    lines = [rows[i]["_line"] for i in good]
    report = audit(args.task, [str(g) for g in golds], texts, verdicts, execute_code=options.execute_code, rows=lines)
    audit_path = Path(args.audit_out) if args.audit_out else target.with_suffix(".audit.jsonl")
    with audit_path.open("w", encoding="utf-8") as out:
        for item in report.disagreements:
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(report.summary() + f"; written to {audit_path}", file=sys.stderr)
    examples: dict[tuple, dict] = {}  # first row of each distinct (gold, answers) disagreement
    for item in report.disagreements:
        examples.setdefault((item["gold"], item["lab_pred"], item["audit_pred"]), item)
    for item in list(examples.values())[:5]:
        print(f"  line {item['row']}: gold {item['gold']!r}: math-verify {item['lab_status']} ({item['lab_pred']!r}), "
              f"is_equiv {'correct' if item['audit_correct'] else 'not correct'} ({item['audit_pred']!r})",
              file=sys.stderr)
