"""Score sample sets: one verdict and one answer-cluster key per completion, fast and hang-free.

    from rewards import Scorer, score_samples

    verdicts = score_samples("gsm8k", golds, completions, problem_ids=ids, execute_code=True)
    with Scorer(num_workers=8, deadline_s=3) as scorer:     # reusable worker pool
        for chunk in chunks:
            verdicts = scorer.score("math", chunk.golds, chunk.completions, chunk.problem_ids)
    verdicts[0].status, verdicts[0].reward, verdicts[0].pred, verdicts[0].cluster

Why it is fast: test-time sweeps hold hundreds of samples per problem with few distinct answers.
Answers are extracted in this process with linear regexes; each distinct program runs once;
each distinct (gold, normalised answer) pair is judged once; pairs of plain numbers are decided
here exactly (`1,234` = `1234.0`; unequal integers are wrong); only the rest goes to
math-verify, in worker processes, in parallel, each gold parsed once per worker. (That is the lab's
rule, a record per completion through four phases: `rewards.lab_rule`.)

Why it cannot hang: math-verify and model code run only in `rewards.pool` workers, each item held
to `deadline_s` (the worker is killed and replaced when missed). Works from any thread, from
several threads at once, and inside DataLoader workers.

Clusters (for majority voting): within a problem, all correct answers share one key; numbers are
keyed by their exact canonical value (`1/2`, `0.5`, `\\frac12` -> `0.5`); other answers by a
math-verify/sympy fingerprint (see `rewards.equivalence`), the cluster named by the first-seen
answer's normalised text. `no_answer` and `error` samples get no cluster and never vote.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Sequence
from typing import Self

from core.errors import UserError
from rewards.extract import MAX_COMPLETION_CHARS, resolve_task
from rewards.lab_rule import LabScoring
from rewards.pool import WorkerPool, antlr411_path
from rewards.rules import resolve_rule, study_answer, study_grpo_program, verl_gold
from rewards.sandbox import announce_isolation, deadline_for
from rewards.verdict import STATUSES, Verdict, as_verdict, bad_input, completion_text, program_failure

# STATUSES, Verdict and completion_text live in `rewards.verdict` (shared with `rewards.lab_rule`); callers
# import them from here.
__all__ = ["DEFAULT_DEADLINE_S", "STATUSES", "Scorer", "Verdict", "completion_text", "default_scorer",
           "score_samples"]

DEFAULT_DEADLINE_S = 5.0


class Scorer:
    """Owns a worker pool; `score()` may be called repeatedly and from several threads."""

    def __init__(self, num_workers: int | None = None, deadline_s: float = DEFAULT_DEADLINE_S,
                 code_timeout_s: float = 3.0, code_memory_mb: int = 512, worker_memory_mb: int = 3072):
        if deadline_s <= 0 or code_timeout_s <= 0:
            raise UserError("deadline_s and code_timeout_s must be positive seconds")
        self.num_workers = max(1, num_workers or os.cpu_count() or 1)
        self.deadline_s = deadline_s
        self.code_timeout_s = code_timeout_s
        self.code_memory_mb = code_memory_mb
        self.worker_memory_mb = worker_memory_mb
        self.pool = WorkerPool(self.num_workers, memory_mb=worker_memory_mb)
        self._study_pool: WorkerPool | None = None  # rule=study's checkers (antlr4 4.11 first), started on use

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()
        if self._study_pool is not None:
            self._study_pool.close()

    def score(self, task: str, golds: Sequence[object], completions: Sequence[object],
              problem_ids: Sequence[object] | None = None, *, execute_code: bool = False, strict: bool = False,
              rule: str = "lab", deadline_s: float | None = None, num_workers: int | None = None,
              progress: Callable[[float], None] | None = None) -> list[Verdict]:
        """One `Verdict` per completion, in order. See the module docstring; `rule` picks whose verdict
        (`rewards.rules`: `lab`, the study's TTC evaluator `study`, the study's GRPO reward `study_grpo`;
        the study's rules ignore `execute_code` and `strict`, which are the lab's)."""
        try:
            task = resolve_task(task)
            rule = resolve_rule(rule)
        except ValueError as err:
            raise UserError(str(err)) from None
        if len(golds) != len(completions) or (problem_ids is not None and len(problem_ids) != len(completions)):
            raise UserError(f"golds ({len(golds)}), completions ({len(completions)}) and problem_ids "
                            f"({'-' if problem_ids is None else len(problem_ids)}) must have the same length")
        deadline = float(deadline_s or self.deadline_s)
        if task == "code":
            if rule != "lab":
                raise UserError(f"rule={rule} has no verdict for code tasks: the tests decide (rule=lab)")
            verdicts = self._score_code(golds, completions, num_workers)
            if progress is not None:
                progress(1.0)
            return verdicts
        if rule != "lab":
            score = self._score_study if rule == "study" else self._score_study_grpo
            verdicts = score(task, golds, completions, deadline, num_workers)
            if progress is not None:
                progress(1.0)
            return verdicts
        workers = min(num_workers or self.num_workers, self.num_workers)
        return LabScoring(self.pool, task, execute_code=execute_code, strict=strict, deadline_s=deadline,
                          workers=workers, code_timeout_s=self.code_timeout_s, code_memory_mb=self.code_memory_mb,
                          progress=progress).score(golds, completions, problem_ids)

    def _score_study(self, task: str, golds: Sequence[object], completions: Sequence[object], deadline: float,
                     num_workers: int | None) -> list[Verdict]:
        """rule=study: strings extracted here; unequal pairs go to Minerva's `is_equiv`, once per distinct
        pair, in the antlr4-4.11 checkers. Clusters are the extracted strings (the study voted on them)."""
        verdicts: list[Verdict | None] = [None] * len(completions)
        pairs: dict[int, tuple[str, str]] = {}
        for i, (gold, completion) in enumerate(zip(golds, completions)):
            text = completion_text(completion)
            gold_answer = study_answer(task, str(gold), is_gold=True) if gold is not None else None
            verdicts[i] = bad_input(text, gold_answer is not None, "gold answer (the study's rule reads none from it)")
            if verdicts[i] is not None:
                continue
            pred = study_answer(task, text)
            if pred is None:
                verdicts[i] = Verdict("no_answer", 0.0, None, None, "the study's rule finds no answer")
            elif pred == gold_answer:
                verdicts[i] = Verdict("correct", 1.0, pred, pred)
            else:
                pairs[i] = (pred, gold_answer)
        distinct = sorted(set(pairs.values()))
        if distinct:
            if self._study_pool is None:
                self._study_pool = WorkerPool(self.num_workers, memory_mb=self.worker_memory_mb,
                                              first_paths=(antlr411_path(),))
            items = [{"kind": "minerva_equiv", "pred": pred, "gold": gold, "deadline_s": max(deadline, 8.0)}
                     for pred, gold in distinct]  # is_equiv holds itself to 5 s (its own alarm)
            results = dict(zip(distinct, self._study_pool.run(items, num_workers)))
            for i, pair in pairs.items():
                verdicts[i] = as_verdict(results[pair].get("status", "error"), pair[0], pair[0],
                                         results[pair].get("detail", ""))
        return verdicts  # type: ignore[return-value]

    def _score_code(self, tests: Sequence[object], programs: Sequence[object],
                    num_workers: int | None) -> list[Verdict]:
        """task=code: each completion is a program and its gold the tests that decide it (HumanEval: the
        task's `check` and `check(entry_point)`; MBPP: its asserts). Each distinct program + tests runs
        once in the sandbox (convention `tests`): `correct` iff it ran to its end without an exception,
        as the harness's `code_eval` counts a pass; `wrong` with the exception in `detail` otherwise."""
        verdicts: list[Verdict | None] = [None] * len(programs)
        runs: dict[str, list[int]] = {}
        for i, (test, program) in enumerate(zip(tests, programs)):
            text = completion_text(program)
            verdicts[i] = bad_input(text, test is not None and bool(str(test).strip()), "tests")
            if verdicts[i] is None:
                runs.setdefault(f"{text}\n{test}\n", []).append(i)
        isolation = announce_isolation() if runs else None
        items = [{"kind": "code", "code": code, "convention": "tests", "isolation": isolation,
                  "timeout_s": self.code_timeout_s, "memory_mb": self.code_memory_mb,
                  "deadline_s": deadline_for(code, self.code_timeout_s) + 2.5} for code in runs]
        for result, indices in zip(self.pool.run(items, num_workers) if items else [], runs.values()):
            status = str(result.get("status"))
            detail = "" if status == "ok" else "code: " + str(result.get("detail", ""))
            verdict = ("correct" if status == "ok" and result.get("answer") == "passed" else
                       program_failure(result, "wrong"))
            for i in indices:
                verdicts[i] = Verdict(verdict, 1.0 if verdict == "correct" else 0.0,
                                      "passed" if verdict == "correct" else None, None, detail)
        return verdicts  # type: ignore[return-value]

    def _score_study_grpo(self, task: str, golds: Sequence[object], completions: Sequence[object],
                          deadline: float, num_workers: int | None) -> list[Verdict]:
        """rule=study_grpo: per distinct (completion, verl gold), the study's programs first, sent to the
        sandbox as programs alone (`<llm-code>`, then TinyGSM where the first gave no answer), then
        math-verify on the first answer or the whole response, in the checkers; the gold as verl stored it
        (`rewards.rules.verl_gold`). A program that crashed its process is an `error`."""
        verdicts: list[Verdict | None] = [None] * len(completions)
        todo: dict[int, tuple[str, str]] = {}
        for i, (gold, completion) in enumerate(zip(golds, completions)):
            text = completion_text(completion)
            verdicts[i] = bad_input(text, gold is not None and bool(str(gold).strip()))
            if verdicts[i] is not None:
                continue
            todo[i] = (text[-MAX_COMPLETION_CHARS:], verl_gold(task, str(gold)))
        distinct = sorted(set(todo.values()))
        answers: dict[str, str | None] = {text: None for text, _ in distinct}
        crashed: dict[str, str] = {}
        for stage in (0, 1):
            programs: dict[tuple[str, str], list[str]] = {}
            for text, answer in answers.items():
                program = study_grpo_program(text, stage) if answer is None and text not in crashed else None
                if program is not None:
                    programs.setdefault(program, []).append(text)
            isolation = announce_isolation() if programs else None
            items = [{"kind": "code", "code": code, "convention": convention, "isolation": isolation,
                      "timeout_s": self.code_timeout_s,
                      "memory_mb": self.code_memory_mb, "deadline_s": deadline_for(code, self.code_timeout_s) + 2.5}
                     for code, convention in programs]
            for result, texts in zip(self.pool.run(items, num_workers) if items else [], programs.values()):
                for text in texts:
                    if result.get("status") == "ok":
                        answers[text] = result.get("answer")
                    elif result.get("status") in ("crashed", "error"):
                        crashed[text] = "code: " + str(result.get("detail", ""))
        judge = [(text, gold) for text, gold in distinct if text not in crashed]
        items = [{"kind": "study_grpo_judge", "completion": text, "answer": answers[text], "gold": gold,
                  "deadline_s": max(deadline, 15.0)} for text, gold in judge]  # parse + verify: 5 s alarms each
        results = dict(zip(judge, self.pool.run(items, num_workers))) if items else {}
        for i, key in todo.items():
            if key[0] in crashed:
                verdicts[i] = Verdict("error", 0.0, None, None, crashed[key[0]])
                continue
            result = results[key]
            pred = result.get("pred")
            verdicts[i] = as_verdict(result.get("status", "error"), pred,
                                     pred if result.get("status") in ("correct", "wrong") else None,
                                     result.get("detail", ""))
        return verdicts  # type: ignore[return-value]


# ----------------------------------------------------------------------------- default scorer

_DEFAULT: dict[int, Scorer] = {}
_DEFAULT_LOCK = threading.Lock()


def _fresh_lock_after_fork() -> None:
    global _DEFAULT_LOCK  # another thread may have held it at fork time: the child must not wait on it
    _DEFAULT_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_after_fork)


def default_scorer(num_workers: int | None = None) -> Scorer:
    """The process-wide scorer (one per process id, so forked DataLoader workers get their own)."""
    with _DEFAULT_LOCK:
        pid = os.getpid()
        scorer = _DEFAULT.get(pid)
        if scorer is None or (num_workers and num_workers > scorer.num_workers):
            if scorer is not None:
                scorer.close()
            scorer = _DEFAULT[pid] = Scorer(num_workers=num_workers)
        return scorer


def _close_default() -> None:
    scorer = _DEFAULT.get(os.getpid())
    if scorer is not None:
        scorer.close()


atexit.register(_close_default)


def score_samples(task: str, golds: Sequence[object], completions: Sequence[object],
                  problem_ids: Sequence[object] | None = None, execute_code: bool = False, strict: bool = False,
                  deadline_s: float = DEFAULT_DEADLINE_S, num_workers: int | None = None,
                  progress: Callable[[float], None] | None = None, rule: str = "lab") -> list[Verdict]:
    """Score with the process-wide reusable worker pool. See `Scorer.score` and the module docstring."""
    return default_scorer(num_workers).score(task, golds, completions, problem_ids, execute_code=execute_code,
                                             strict=strict, rule=rule, deadline_s=deadline_s,
                                             num_workers=num_workers, progress=progress)
