"""`rewards/` decides correctness: answer extraction, math-verify equivalence in hang-proof worker
processes, sandboxed execution of code answers, answer clusters for voting, TRL reward functions.

Public API (see `rewards/README.md`):

    score_samples(task, golds, completions, problem_ids=None, execute_code=False, strict=False,
                  deadline_s=5.0, num_workers=None) -> list[Verdict]
    Scorer(num_workers=None, deadline_s=5.0, ...)   # context manager, reusable worker pool
    get_reward_funcs(names, options=None) -> list[callable]   # TRL reward functions by name

Importing the package imports nothing: the names above load their module on first use (PEP 562),
so `from rewards.extract import final_boxed` (the datasets layer does) does not start the scorer's
fork and exit hooks or the worker-pool machinery.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "STATUSES": "rewards.scorer", "Scorer": "rewards.scorer", "Verdict": "rewards.scorer",
    "default_scorer": "rewards.scorer", "score_samples": "rewards.scorer",
    "REWARD_FUNCS": "rewards.trl_rewards", "accuracy_reward": "rewards.trl_rewards",
    "format_reward": "rewards.trl_rewards", "get_accuracy_reward": "rewards.trl_rewards",
    "get_format_reward": "rewards.trl_rewards", "get_reward_funcs": "rewards.trl_rewards",
    "get_soft_overlong_punishment": "rewards.trl_rewards",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rewards' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
