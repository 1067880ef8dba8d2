"""rule=lab, one `Scorer.score` call: a record per completion, four phases that fill the records in.

    read     extract each answer and gold here (linear regexes), once per distinct string
    run      each distinct program once, in the sandbox; its return value becomes the answer
    judge    plain numbers decided here, exactly; every other distinct (gold, answer) pair once, by
             math-verify in the workers, under a hard deadline
    write    verdicts and clusters, in sample order (the first-seen answer names a cluster)

Why records and phases over distinct things: a sweep call holds thousands of completions with a few
distinct answers per problem, so each phase works on what is distinct (strings, programs, pairs) and
writes the outcome back to every record that shares it. A record whose verdict is settled early (bad
input, no answer, a failed program) keeps it and skips the later phases. Verdicts stay typed throughout:
a `Verdict` for those settled early, a `Judgement` per pair; the workers' replies (dicts, as the worker
protocol pickles them) become `Judgement`s where they arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from rewards.extract import (
    canonical_number,
    clean_number,
    extract_answer,
    extract_gold,
    normalize_answer,
    parse_number,
)
from rewards.pool import WorkerPool
from rewards.sandbox import announce_isolation, deadline_for
from rewards.verdict import STATUSES, Verdict, as_verdict, bad_input, completion_text, program_failure

# What math-verify judges: (the gold's answer, the answer normalised or the completion's tail, whether it is the
# tail, for math-verify to search). A plain tuple, not a NamedTuple: one is built per sample, and a NamedTuple
# costs tens of times as much to build. Sorting pairs puts one gold's pairs together.
Pair = tuple[str, str, bool]


@dataclass(frozen=True)
class Judgement:
    """math-verify's verdict on one pair, decided here (`decide_numbers`) or in a worker.

    `pred`: the answer as judged (math-verify's reading of a completion's tail; None when it read none);
    `numeric`: a plain number's exact canonical value, its cluster key; `fingerprint`: the equivalence key of
    other answers (`rewards.equivalence`), None when there is none.
    """

    status: str
    pred: str | None
    numeric: str | None
    fingerprint: str | None
    detail: str = ""

    @classmethod
    def from_worker(cls, result: dict, pair: Pair) -> Judgement:
        """A worker's reply (`rewards.equivalence.judge`, or the pool's own `timeout`/`error`, which names
        neither the answer nor its value: a plain answer is its own `pred`, and its value is computed here)."""
        _, answer, answer_is_text = pair
        numeric = result.get("numeric")
        if numeric is None and not answer_is_text:
            value = parse_number(answer)
            numeric = canonical_number(value) if value is not None else None
        status = result.get("status", "error")
        pred = result.get("pred", None if answer_is_text else answer)
        return cls(status if status in STATUSES else "error", pred, numeric, result.get("fingerprint"),
                   str(result.get("detail", "")))


def decide_numbers(gold: str, pred: str, gold_number: Fraction | None,
                   pred_number: Fraction | None) -> Judgement | None:
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
    return Judgement("correct" if gold_number == pred_number else "wrong", pred, canonical_number(pred_number), None)


def _exact(text: str, value: Fraction) -> bool:
    return "." not in text and abs(value.numerator) < 10**6 and value.denominator < 10**6


@dataclass(slots=True)
class Sample:
    """One completion on its way to a verdict. Each phase fills some fields in; once `verdict` is set the
    record is settled and the later phases skip it.

    `problem`: the scope of its answer cluster (its problem id, else its gold's answer); `gold`: the gold's
    answer; `program`: the code whose return value is the answer (`execute_code`);
    `answer`: the extracted answer, or the completion's tail when `answer_is_text`; `pair`: what the judge
    phase judged for it.
    """

    problem: object = None
    gold: str | None = None
    program: str | None = None
    answer: str | None = None
    answer_is_text: bool = False
    pair: Pair | None = None
    verdict: Verdict | None = None


class _Memo(dict):
    """A pure function of one string, computed once per distinct argument (one `score` call's lifetime):
    `memo[argument]`. A dict with `__missing__`, so that a repeat (most calls) costs one dict lookup."""

    def __init__(self, function: Callable[[str], object]):
        super().__init__()
        self.function = function

    def __missing__(self, argument: str):
        value = self[argument] = self.function(argument)
        return value


class _Progress:
    """The caller's progress callback, the fraction of worker items done: the programs first, the pairs added
    to the total once they are known (so the fraction can step back when the judge phase starts)."""

    def __init__(self, callback: Callable[[float], None] | None):
        self.callback, self.done, self.total = callback, 0, 0

    def expect(self, items: int) -> None:
        self.total += items

    def tick(self, items: int) -> None:
        self.done += items
        if self.callback is not None:
            self.callback(min(1.0, self.done / max(1, self.total)))

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(1.0)


class LabScoring:
    """One call's state: the worker pool and settings, and the memos of the pure functions each phase
    applies to repeated strings (a sweep repeats each gold once per sample, and answers many times)."""

    def __init__(self, pool: WorkerPool, task: str, *, execute_code: bool, strict: bool, deadline_s: float,
                 workers: int, code_timeout_s: float, code_memory_mb: int,
                 progress: Callable[[float], None] | None = None):
        self.pool, self.task, self.workers = pool, task, workers
        self.deadline_s = deadline_s
        self.inner_timeout_s = max(1, int(deadline_s // 2))  # math-verify's own alarm, inside the hard deadline
        self.code_timeout_s, self.code_memory_mb = code_timeout_s, code_memory_mb
        self.progress = _Progress(progress)
        self.extracted = _Memo(lambda text: extract_answer(task, text, strict=strict, execute_code=execute_code))
        self.gold_answer = _Memo(extract_gold)
        self.normalized = _Memo(normalize_answer)
        self.number = _Memo(parse_number)
        self.judgements: dict[Pair, Judgement] = {}

    def score(self, golds: Sequence[object], completions: Sequence[object],
              problem_ids: Sequence[object] | None) -> list[Verdict]:
        """One `Verdict` per completion, in order (the lengths are checked by the caller).

        A sweep repeats whole samples (a problem's n completions often say the same thing): each distinct
        (problem, gold, completion) is read, judged and clustered once, in first-seen order, and its
        verdict given to every repeat. Same verdicts as one record per sample: a repeat's verdict depends
        only on its own strings and on the records seen before its first occurrence."""
        problems = problem_ids if problem_ids is not None else [None] * len(golds)
        first: dict[tuple, int] = {}
        positions: list[int] = []
        distinct: list[tuple[object, object, object]] = []
        for triple in zip(problems, golds, completions):
            try:  # the gold's type too: 1 == 1.0 == True as keys, but str() tells them apart
                position = first.setdefault((type(triple[1]), *triple), len(distinct))
            except TypeError:  # unhashable (a conversational completion): a record of its own
                position = len(distinct)
            if position == len(distinct):
                distinct.append(triple)
            positions.append(position)
        samples = [self.read(gold, completion) for _, gold, completion in distinct]
        if problem_ids is not None:  # without them a record's problem is its gold answer (`read`)
            for sample, (problem, _, _) in zip(samples, distinct):
                sample.problem = problem
        self.run_programs(samples)
        self.judge(samples)
        self.progress.finish()
        verdicts = self.write(samples)
        return [verdicts[position] for position in positions]

    # ------------------------------------------------------------------------------------------- phases

    def read(self, gold: object, completion: object) -> Sample:
        """A record with the gold's answer and the completion's answer or program, or settled: bad input,
        no answer."""
        text = completion_text(completion)
        gold_text = None if gold is None else str(gold)
        settled = bad_input(text, gold_text is not None and bool(gold_text.strip()))
        if settled is not None:
            return Sample(verdict=settled)
        gold_answer = self.gold_answer[gold_text]
        sample = Sample(gold_answer, gold_answer)  # problem, gold; positional: cheaper, and this runs per sample
        found = self.extracted[text]
        if found.code is not None:
            sample.program = found.code
        elif found.pred is None:
            sample.verdict = Verdict("no_answer", 0.0, None, None, "no answer found")
        else:
            sample.answer, sample.answer_is_text = found.pred, found.source == "text"
        return sample

    def run_programs(self, samples: list[Sample]) -> None:
        """Each distinct program once, in the sandbox: its return value (a clean number, else normalised)
        becomes the answer of every record that holds it; a program with no usable answer settles them."""
        programs: dict[str, list[Sample]] = {}
        for sample in samples:
            if sample.program is not None:
                programs.setdefault(sample.program, []).append(sample)
        self.progress.expect(len(programs))
        if not programs:
            return
        isolation = announce_isolation()
        items = [{"kind": "code", "code": code, "isolation": isolation, "timeout_s": self.code_timeout_s,
                  "memory_mb": self.code_memory_mb, "deadline_s": deadline_for(code, self.code_timeout_s) + 2.5}
                 for code in programs]
        for result, holders in zip(self.pool.run(items, self.workers, self.progress.tick), programs.values()):
            answer = result.get("answer")
            if result.get("status") == "ok" and answer:
                number = clean_number(answer) if self.task != "math" else None
                returned = number or normalize_answer(answer)
                for sample in holders:
                    sample.answer = returned
            else:
                failed = Verdict(program_failure(result, "no_answer"), 0.0, None, None,
                                 "code: " + str(result.get("detail", "")))
                for sample in holders:
                    sample.verdict = failed

    def judge(self, samples: list[Sample]) -> None:
        """Pair each open record's answer with its gold; decide pairs of plain numbers here, and send every
        other distinct pair to the workers once, sorted (one gold's pairs together: its parse is cached)."""
        undecided: set[Pair] = set()
        for sample in samples:
            if sample.verdict is not None:
                continue
            gold, is_text = sample.gold, sample.answer_is_text
            answer = sample.answer if is_text else self.normalized[sample.answer]
            pair = sample.pair = (gold, answer, is_text)
            if pair in self.judgements or pair in undecided:
                continue
            decided = None if is_text else decide_numbers(gold, answer, self.number[gold], self.number[answer])
            if decided is None:
                undecided.add(pair)
            else:
                self.judgements[pair] = decided
        self.progress.expect(len(undecided))
        sorted_pairs = sorted(undecided)
        items = [{"kind": "judge", "gold": gold, "pred": answer, "pred_is_text": is_text,
                  "timeout_s": self.inner_timeout_s, "deadline_s": self.deadline_s}
                 for gold, answer, is_text in sorted_pairs]
        for pair, result in zip(sorted_pairs, self.pool.run(items, self.workers, self.progress.tick)):
            self.judgements[pair] = Judgement.from_worker(result, pair)

    def write(self, samples: list[Sample]) -> list[Verdict]:
        """Every record's verdict, in sample order. Clusters, within a problem: all correct answers share
        the first-seen correct answer's key; equal fingerprints share the first-seen answer's key; else a
        plain number's canonical value, or the normalised answer. Records settled before the judge phase, and
        judgements other than correct, wrong or timeout, get none (they never vote)."""
        correct_cluster: dict[object, str] = {}
        fingerprint_cluster: dict[tuple[object, str], str] = {}
        verdicts = []
        for sample in samples:
            if sample.verdict is None:
                judged = self.judgements[sample.pair]
                cluster = None
                if judged.status in ("correct", "wrong", "timeout") and judged.pred is not None:
                    own = judged.numeric or self.normalized[judged.pred]
                    if judged.fingerprint:
                        own = fingerprint_cluster.setdefault((sample.problem, judged.fingerprint), own)
                    cluster = correct_cluster.setdefault(sample.problem, own) if judged.status == "correct" else own
                sample.verdict = as_verdict(judged.status, judged.pred, cluster, judged.detail)
            verdicts.append(sample.verdict)
        return verdicts
