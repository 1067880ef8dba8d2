"""Reward functions in TRL's contract, usable as `GRPOTrainer(reward_funcs=[...])` or by name.

    f(prompts, completions, **dataset_columns) -> list[float | None]

Completions may be strings or chat lists (`[{"role": "assistant", "content": ...}]`). `None`
tells TRL to skip a sample (used when the gold answer itself cannot be parsed, as TRL's own
`accuracy_reward` does). Rewards are callable objects rather than closures so they pickle
(TRL's async rollout worker forwards reward functions to a spawned process).

Unlike TRL's `accuracy_reward` (math-verify in-process, timeouts disabled off the main thread),
these go through `rewards.scorer`: hard per-sample deadline, any thread, sandboxed code answers.

Names for recipes (`get_reward_funcs`): `accuracy`, `format`, `soft_overlong_punishment`, or a
dotted import path (`my_lab.rewards.length_bonus`), the TRL/open-r1 pattern.

Which answer rules judge a sample comes from its `task` column (the lab's rows always have one);
guessing it from the gold is only the fallback for datasets without that column (`_task_for`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence

from core.errors import UserError

Reward = Callable[..., list]


def _texts(completions: Sequence[object]) -> list[str]:
    from rewards.scorer import completion_text

    return [completion_text(c) or "" for c in completions]


def _task_for(gold: str, task: str | None) -> str:
    """The checker task of one sample: its `task` column (or the reward's `task` option), else a guess.

    The guess is the one fallback for a TRL dataset built outside the lab: TRL hands a reward function
    only the dataset's columns, so without a `task` column `####` in the gold means GSM8K rules and
    anything else MATH rules. A bare GSM8K number as gold (`"18"`) is thus judged by MATH rules: give
    such a dataset a `task` column. The lab's datasets always carry one (`tasks.datasets` rows; GRPO
    passes it), so inside the lab the guess never runs. Column values are checker tasks only
    (gsm8k/math/toy); a dataset name (`math500`) is mapped to one by `tasks.datasets.checker_task`."""
    from rewards.extract import resolve_task

    if task:
        try:
            return resolve_task(task)
        except ValueError as err:
            raise UserError(f"reward column 'task': {err}") from None
    return "gsm8k" if "####" in str(gold) else "math"


class AccuracyReward:
    """1.0 if the completion's answer equals the gold (column `gold`, else `solution`), else 0.0;
    None when the gold cannot be parsed. Column `task` (gsm8k/math/toy) per sample; without it,
    the fallback of `_task_for` (`####` in the gold: GSM8K rules, else MATH)."""

    __name__ = "accuracy_reward"

    def __init__(self, task: str | None = None, execute_code: bool = False, strict: bool = False,
                 deadline_s: float = 5.0, num_workers: int | None = None, rule: str = "lab"):
        from rewards.rules import resolve_rule

        try:
            self.rule = resolve_rule(rule)  # `study_grpo`: the study's GRPO reward exactly (rewards/rules.py)
        except ValueError as err:
            raise UserError(f"accuracy reward: {err}") from None
        self.task, self.execute_code, self.strict = task, execute_code, strict
        self.deadline_s, self.num_workers = deadline_s, num_workers

    def __call__(self, prompts: Sequence[object] | None = None, completions: Sequence[object] = (),
                 gold: Sequence[str] | None = None, solution: Sequence[str] | None = None,
                 task: Sequence[str] | None = None, **kwargs) -> list[float | None]:
        from rewards.scorer import score_samples

        # the study's rules take their gold from the raw solution, as verl stored it from there
        golds = solution if self.rule != "lab" and solution is not None else gold if gold is not None else solution
        if golds is None:
            raise UserError("accuracy reward needs a dataset column 'gold' (or 'solution') with the answers")
        texts = _texts(completions)
        tasks = [_task_for(g, task[i] if task is not None else self.task) for i, g in enumerate(golds)]
        rewards: list[float | None] = [None] * len(texts)
        for name in sorted(set(tasks)):
            index = [i for i, t in enumerate(tasks) if t == name]
            verdicts = score_samples(name, [golds[i] for i in index], [texts[i] for i in index],
                                     execute_code=self.execute_code, strict=self.strict, rule=self.rule,
                                     deadline_s=self.deadline_s, num_workers=self.num_workers)
            for i, verdict in zip(index, verdicts):
                gold_broken = verdict.status == "error" and "gold" in verdict.detail
                rewards[i] = None if gold_broken else verdict.reward
        return rewards


class FormatReward:
    """1.0 if the completion states its final answer in the task's format, else 0.0:
    `\\boxed{...}` for MATH, a `#### N` line for GSM8K/toy (task as in `AccuracyReward`)."""

    __name__ = "format_reward"
    _FORMATS = {"math": re.compile(r"\\boxed\{.+?\}", re.DOTALL),
                "gsm8k": re.compile(r"^#### -?[\d,]*\.?\d+\s*$", re.MULTILINE),
                "toy": re.compile(r"^#### -?[\d,]*\.?\d+\s*$", re.MULTILINE)}

    def __init__(self, task: str | None = None):
        self.task = task

    def __call__(self, prompts: Sequence[object] | None = None, completions: Sequence[object] = (),
                 gold: Sequence[str] | None = None, solution: Sequence[str] | None = None,
                 task: Sequence[str] | None = None, **kwargs) -> list[float]:
        golds = gold if gold is not None else solution if solution is not None else [""] * len(completions)
        rewards = []
        for i, text in enumerate(_texts(completions)):
            name = _task_for(golds[i], task[i] if task is not None else self.task)
            rewards.append(1.0 if self._FORMATS[name].search(text) else 0.0)
        return rewards


class SoftOverlongPunishment:
    """DAPO's "soft overlong punishment" (Yu et al. 2025, arXiv 2503.14476), on completion token counts:
    0 up to `max_completion_len - soft_punish_cache`, then linear down to -1 at the limit, -1 beyond."""

    __name__ = "soft_overlong_punishment"

    def __init__(self, max_completion_len: int = 1024, soft_punish_cache: int = 256):
        if not 0 < soft_punish_cache <= max_completion_len:
            raise UserError("soft_overlong_punishment needs 0 < soft_punish_cache <= max_completion_len")
        self.max_completion_len, self.soft_punish_cache = max_completion_len, soft_punish_cache

    def __call__(self, prompts: Sequence[object] | None = None, completions: Sequence[object] = (),
                 completion_ids: Sequence[Sequence[int]] | None = None, **kwargs) -> list[float]:
        if completion_ids is None:
            raise UserError("soft_overlong_punishment needs completion_ids (token ids; GRPOTrainer passes them)")
        start = self.max_completion_len - self.soft_punish_cache
        rewards = []
        for ids in completion_ids:
            length = len(ids)
            if length <= start:
                rewards.append(0.0)
            elif length <= self.max_completion_len:
                rewards.append((start - length) / self.soft_punish_cache)
            else:
                rewards.append(-1.0)
        return rewards


def get_accuracy_reward(task: str | None = None, execute_code: bool = False, strict: bool = False,
                        deadline_s: float = 5.0, num_workers: int | None = None, rule: str = "lab") -> AccuracyReward:
    return AccuracyReward(task, execute_code, strict, deadline_s, num_workers, rule)


def get_format_reward(task: str | None = None) -> FormatReward:
    return FormatReward(task)


def get_soft_overlong_punishment(max_completion_len: int = 1024,
                                 soft_punish_cache: int = 256) -> SoftOverlongPunishment:
    return SoftOverlongPunishment(max_completion_len, soft_punish_cache)


accuracy_reward = get_accuracy_reward()
format_reward = get_format_reward()

# name -> factory; `options[name]` (a dict) is passed to the factory as keyword arguments.
REWARD_FUNCS: dict[str, Callable[..., Reward]] = {
    "accuracy": get_accuracy_reward,
    "format": get_format_reward,
    "soft_overlong_punishment": get_soft_overlong_punishment,
}


def get_reward_funcs(names: Sequence[str], options: dict[str, dict] | None = None) -> list[Reward]:
    """Reward callables by registry name or dotted import path (`package.module.function`).

    A dotted path names a reward function, or a factory when `options` holds keyword arguments
    for it. Unknown names raise `UserError` listing the registered ones.
    """
    options = options or {}
    funcs: list[Reward] = []
    for name in names:
        kwargs = dict(options.get(name) or {})
        if name in REWARD_FUNCS:
            try:
                funcs.append(REWARD_FUNCS[name](**kwargs))
            except TypeError as err:
                raise UserError(f"reward '{name}': bad options {kwargs}: {err}") from None
            continue
        module_name, _, attribute = name.rpartition(".")
        if not module_name:
            raise UserError(f"unknown reward '{name}': use one of {', '.join(REWARD_FUNCS)} "
                            "or a dotted import path like my_package.rewards.my_reward")
        try:
            target = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as err:
            raise UserError(f"reward '{name}' cannot be imported: {err}") from None
        funcs.append(target(**kwargs) if kwargs else target)
    return funcs
