"""A completion's `Verdict`, and what every scoring rule shares on the way to one.

Apart from `rewards.scorer` so that the lab rule's pipeline (`rewards.lab_rule`) and the scorer's other
rules (the study's, code tasks') read completions, reject bad inputs and name a failed program's status
the same way without importing each other. `rewards.scorer` re-exports `STATUSES`, `Verdict` and
`completion_text`: callers keep importing them from there.
"""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("correct", "wrong", "no_answer", "timeout", "error")


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


def bad_input(text: str | None, gold_readable: bool, gold_problem: str = "gold answer") -> Verdict | None:
    """The `error` verdict of a missing completion or an unreadable gold; None when both are usable."""
    if text is not None and gold_readable:
        return None
    return Verdict("error", 0.0, None, None, f"missing or malformed {'completion' if text is None else gold_problem}")


def program_failure(result: dict, otherwise: str) -> str:
    """The status of a program that gave no usable answer: `timeout`, `error` for a crash or a sandbox that
    cannot run (never a plain failure), else `otherwise` (`no_answer`; `wrong` for code tasks' tests).
    `result` is the sandbox's reply as a worker sends it (`rewards.worker`)."""
    return {"timeout": "timeout", "crashed": "error", "error": "error"}.get(str(result.get("status")), otherwise)


def as_verdict(status: str, pred: str | None, cluster: str | None, detail: object = "") -> Verdict:
    """A checker's result as a Verdict: an unknown status is `error`, the reward follows the status."""
    status = status if status in STATUSES else "error"
    return Verdict(status, 1.0 if status == "correct" else 0.0, pred, cluster, str(detail))
