"""`rewards/` decides correctness: answer extraction, math-verify equivalence in hang-proof worker
processes, sandboxed execution of code answers, answer clusters for voting, TRL reward functions.

Public API (see `rewards/README.md`):

    score_samples(task, golds, completions, problem_ids=None, execute_code=False, strict=False,
                  deadline_s=5.0, num_workers=None) -> list[Verdict]
    Scorer(num_workers=None, deadline_s=5.0, ...)   # context manager, reusable worker pool
    get_reward_funcs(names, options=None) -> list[callable]   # TRL reward functions by name
"""

from rewards.scorer import STATUSES, Scorer, Verdict, default_scorer, score_samples
from rewards.trl_rewards import (REWARD_FUNCS, accuracy_reward, format_reward, get_accuracy_reward,
                                 get_format_reward, get_reward_funcs, get_soft_overlong_punishment)

__all__ = ["STATUSES", "Scorer", "Verdict", "default_scorer", "score_samples", "REWARD_FUNCS",
           "accuracy_reward", "format_reward", "get_accuracy_reward", "get_format_reward",
           "get_reward_funcs", "get_soft_overlong_punishment"]
