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
math-verify, in worker processes, in parallel, each gold parsed once per worker.

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
from dataclasses import dataclass
from fractions import Fraction

from core.errors import UserError
from rewards.extract import (MAX_COMPLETION_CHARS, canonical_number, clean_number, extract_answer, extract_gold,
                             normalize_answer, parse_number, resolve_task)
from rewards.pool import WorkerPool, antlr411_path
from rewards.rules import resolve_rule, study_answer, study_grpo_program, verl_gold
from rewards.sandbox import announce_isolation, deadline_for

STATUSES = ("correct", "wrong", "no_answer", "timeout", "error")
DEFAULT_DEADLINE_S = 5.0


@dataclass(frozen=True)
class Verdict:
    """One completion's verdict. `reward` is 1.0 iff `status == "correct"`.

    status: `correct` / `wrong` (judged), `no_answer` (nothing extractable, or the program failed),
    `timeout` (the check or program missed its deadline), `error` (bad input or gold, checker crash, a
    program that crashed its process).
    `pred`: the extracted answer (None if none); `cluster`: the vote key (None: does not vote);
    `detail`: why, for the non-obvious statuses.
    """

    status: str
    reward: float
    pred: str | None
    cluster: str | None
    detail: str = ""


def _bad_input(text: str | None, gold_readable: bool, gold_problem: str = "gold answer") -> Verdict | None:
    """The `error` verdict of a missing completion or an unreadable gold; None when both are usable."""
    if text is not None and gold_readable:
        return None
    return Verdict("error", 0.0, None, None, f"missing or malformed {'completion' if text is None else gold_problem}")


def _program_failure(result: dict, otherwise: str) -> str:
    """The verdict of a program that gave no usable answer: `timeout`, `error` for a crash or a sandbox that
    cannot run (never a plain failure), else `otherwise` (`no_answer`; `wrong` for code tasks' tests)."""
    return {"timeout": "timeout", "crashed": "error", "error": "error"}.get(str(result.get("status")), otherwise)


def _verdict(status: str, pred: str | None, cluster: str | None, detail: object = "") -> Verdict:
    """A checker's result as a Verdict: an unknown status is `error`, the reward follows the status."""
    status = status if status in STATUSES else "error"
    return Verdict(status, 1.0 if status == "correct" else 0.0, pred, cluster, str(detail))


class _Memo(dict):
    """A pure function of one string, computed once per distinct argument (one `score` call's lifetime)."""

    def __init__(self, function: Callable[[str], object]):
        super().__init__()
        self.function = function

    def __call__(self, argument: str):
        try:
            return self[argument]
        except KeyError:
            value = self[argument] = self.function(argument)
            return value


def decide_numbers(gold: str, pred: str, gold_number: Fraction | None, pred_number: Fraction | None) -> dict | None:
    """math-verify's verdict on two plain numbers, decided here without a worker round trip; None when
    math-verify's own rules are needed. Equal values are `correct`. Unequal values are `wrong` when both are
    integers, or both exact fractions (no decimal point, numerator and denominator below 10^6): math-verify
    then compares them exactly (`grader.sympy_numeric_eq` rounds only when one side is a float; should the
    parse stay an unevaluated quotient, its 15-digit `evalf` of the difference, at least 1e-12 here, is not
    chopped to 0, and simplify cannot equate two distinct rationals). A decimal goes to math-verify, which
    rounds to 6 places (`0.333333` = 1/3). `tests/test_rewards_speed.py` checks every decision against the
    workers' verdict."""
    if gold_number is None or pred_number is None:
        return None
    integers = gold_number.denominator == 1 and pred_number.denominator == 1
    if gold_number != pred_number and not integers and not (_exact(gold, gold_number) and _exact(pred, pred_number)):
        return None
    return {"status": "correct" if gold_number == pred_number else "wrong", "pred": pred,
            "numeric": canonical_number(pred_number), "fingerprint": None, "detail": ""}


def _exact(text: str, value: Fraction) -> bool:
    return "." not in text and abs(value.numerator) < 10**6 and value.denominator < 10**6


def completion_text(completion: object) -> str | None:
    """A plain string, or TRL's conversational form `[{"role": "assistant", "content": ...}]`."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion:
        messages = [m for m in completion if isinstance(m, dict) and isinstance(m.get("content"), str)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        if assistant or messages:
            return (assistant or messages)[-1]["content"]
    return None


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

    def __enter__(self) -> Scorer:
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
        inner_timeout = max(1, int(deadline // 2))  # math-verify's own alarm, inside the hard deadline
        workers = min(num_workers or self.num_workers, self.num_workers)
        count = len(completions)
        verdicts: list[Verdict | None] = [None] * count
        preds: list[tuple[str, bool] | None] = [None] * count  # (answer, is completion tail)
        gold_answers: list[str | None] = [None] * count

        # 1. Extract answers and golds here (cheap, linear); collect distinct programs. A sweep repeats each
        #    gold once per sample, and answers (and short completions) many times: pure functions of them run
        #    once per distinct string in a call.
        programs: dict[str, list[int]] = {}
        gold_answer_of: dict[str, str] = {}
        normalized = _Memo(normalize_answer)
        extracted = _Memo(lambda text: extract_answer(task, text, strict=strict, execute_code=execute_code))
        for i, (gold, completion) in enumerate(zip(golds, completions)):
            text = completion_text(completion)
            gold_text = None if gold is None else str(gold)
            verdicts[i] = _bad_input(text, gold_text is not None and bool(gold_text.strip()))
            if verdicts[i] is not None:
                continue
            gold_answer = gold_answer_of.get(gold_text)
            if gold_answer is None:
                gold_answer = gold_answer_of[gold_text] = extract_gold(gold_text)
            gold_answers[i] = gold_answer
            found = extracted(text)
            if found.code is not None:
                programs.setdefault(found.code, []).append(i)
            elif found.pred is None:
                verdicts[i] = Verdict("no_answer", 0.0, None, None, "no answer found")
            else:
                preds[i] = (found.pred, found.source == "text")

        total_items = [len(programs)]
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(min(1.0, done[0] / max(1, total_items[0])))

        # 2. Run each distinct program once; its return value becomes the answer.
        if programs:
            isolation = announce_isolation()
            code_items = [{"kind": "code", "code": code, "isolation": isolation, "timeout_s": self.code_timeout_s,
                           "memory_mb": self.code_memory_mb,
                           "deadline_s": deadline_for(code, self.code_timeout_s) + 2.5}
                          for code in programs]
            for result, indices in zip(self.pool.run(code_items, workers, tick), programs.values()):
                answer = result.get("answer")
                for i in indices:
                    if result.get("status") == "ok" and answer:
                        number = clean_number(answer) if task != "math" else None
                        preds[i] = (number or normalize_answer(answer), False)
                    else:
                        status = _program_failure(result, "no_answer")
                        verdicts[i] = Verdict(status, 0.0, None, None, "code: " + str(result.get("detail", "")))

        # 3. Decide plain numbers here; collect distinct pairs for math-verify.
        judged: dict[tuple[str, str, bool], dict] = {}
        to_judge: list[tuple[str, str, bool]] = []
        keys: list[tuple[str, str, bool] | None] = [None] * count
        number = _Memo(parse_number)
        for i in range(count):
            if verdicts[i] is not None or preds[i] is None:
                continue
            answer, is_text = preds[i]
            key = keys[i] = (gold_answers[i], answer if is_text else normalized(answer), is_text)
            if key in judged:
                continue
            decided = None if is_text else decide_numbers(key[0], key[1], number(key[0]), number(key[1]))
            if decided is not None:
                judged[key] = decided
            else:
                judged[key] = {}
                to_judge.append(key)
        total_items[0] += len(to_judge)
        judge_items = [{"kind": "judge", "gold": gold, "pred": pred, "pred_is_text": is_text,
                        "timeout_s": inner_timeout, "deadline_s": deadline}
                       for gold, pred, is_text in sorted(to_judge)]  # same gold together: cache hits
        for item, result in zip(judge_items, self.pool.run(judge_items, workers, tick)):
            key = (item["gold"], item["pred"], item["pred_is_text"])
            result.setdefault("pred", None if key[2] else key[1])
            if result.get("numeric") is None and not key[2]:
                value = number(key[1])
                result["numeric"] = canonical_number(value) if value is not None else None
            judged[key] = result
        if progress is not None:
            progress(1.0)

        # 4. Verdicts and clusters, in sample order (first-seen answer names a cluster).
        problems = problem_ids if problem_ids is not None else gold_answers
        correct_cluster: dict[object, str] = {}
        fingerprint_cluster: dict[tuple[object, str], str] = {}
        for i in range(count):
            if verdicts[i] is not None:
                continue
            result = judged[keys[i]]
            status = result.get("status", "error")
            pred = result.get("pred")
            cluster = None
            if status in ("correct", "wrong", "timeout") and pred is not None:
                own = result.get("numeric") or normalized(pred)
                if result.get("fingerprint"):
                    own = fingerprint_cluster.setdefault((problems[i], result["fingerprint"]), own)
                cluster = correct_cluster.setdefault(problems[i], own) if status == "correct" else own
            verdicts[i] = _verdict(status, pred, cluster, result.get("detail", ""))
        return verdicts  # type: ignore[return-value]


    def _score_study(self, task: str, golds: Sequence[object], completions: Sequence[object], deadline: float,
                     num_workers: int | None) -> list[Verdict]:
        """rule=study: strings extracted here; unequal pairs go to Minerva's `is_equiv`, once per distinct
        pair, in the antlr4-4.11 checkers. Clusters are the extracted strings (the study voted on them)."""
        verdicts: list[Verdict | None] = [None] * len(completions)
        pairs: dict[int, tuple[str, str]] = {}
        for i, (gold, completion) in enumerate(zip(golds, completions)):
            text = completion_text(completion)
            gold_answer = study_answer(task, str(gold), is_gold=True) if gold is not None else None
            verdicts[i] = _bad_input(text, gold_answer is not None, "gold answer (the study's rule reads none from it)")
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
                verdicts[i] = _verdict(results[pair].get("status", "error"), pair[0], pair[0],
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
            verdicts[i] = _bad_input(text, test is not None and bool(str(test).strip()), "tests")
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
                       _program_failure(result, "wrong"))
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
            verdicts[i] = _bad_input(text, gold is not None and bool(str(gold).strip()))
            if verdicts[i] is not None:
                continue
            todo[i] = (text[-MAX_COMPLETION_CHARS:], verl_gold(task, str(gold)))
        distinct = sorted(set(todo.values()))
        answers: dict[str, str | None] = {text: None for text, _ in distinct}
        crashed: dict[str, str] = {}
        for stage in (0, 1):
            programs: dict[tuple[str, str], list[str]] = {}
            for text in answers:
                program = study_grpo_program(text, stage) if answers[text] is None and text not in crashed else None
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
            verdicts[i] = _verdict(result.get("status", "error"), pred,
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
