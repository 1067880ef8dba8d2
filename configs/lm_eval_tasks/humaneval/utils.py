# Reproduces lm-evaluation-harness 82a99365abdc801a11d41095182a4da506591aec, lm_eval/tasks/humaneval/utils.py, but for
# pass@k: there `evaluate`'s code_eval (fetched from the hub on import, then run on the generated programs with no
# sandbox); here the lab's code checker (rewards, task=code): each program + its tests runs once in the lab's
# sandbox (rewards/README.md, "Sandbox"), passing iff it runs to its end, with the same 3 s limit, and pass@k is
# the same unbiased estimator (Chen et al. 2021; core.stats.pass_at_k). The filters are the harness's, unchanged.
import numpy as np

from core.stats import pass_at_k as unbiased_pass_at_k
from rewards import score_samples


def pass_at_k(references: list[str], predictions: list[list[str]], k: list[int] = None):
    """code_eval's `compute(references, predictions, k)[0]`: {"pass@K": mean over problems}."""
    assert k is not None
    if isinstance(k, int):
        k = [k]
    passed = []
    for reference, programs in zip(references, predictions):
        verdicts = score_samples("code", [reference] * len(programs), list(programs))
        passed.append(sum(v.status == "correct" for v in verdicts))
    n = len(predictions[0]) if predictions else 0
    values = unbiased_pass_at_k(n, np.array(passed), [kk for kk in k if kk <= n]).mean(axis=0) if n else []
    return {f"pass@{kk}": float(value) for kk, value in zip([kk for kk in k if kk <= n], values)}


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]


def build_predictions_instruct(
    resps: list[list[str]], docs: list[dict]
) -> list[list[str]]:
    return [
        [
            doc["prompt"] + (r if r.rfind("```") == -1 else r[: r.rfind("```")])
            for r in resp
        ]
        for resp, doc in zip(resps, docs)
    ]
