"""Where the lab claims the study's setting: recipes, prompts, few-shot draws, the GRPO reward rule, bf16."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.config import load_config
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def show(recipe: str) -> str:
    return subprocess.run([sys.executable, "-m", "moelab.cli", "config", "show", recipe], check=True,
                          capture_output=True, text=True, cwd=ROOT).stdout


@pytest.mark.slow
def test_paper_sweep_recipes_score_like_the_study_with_a_lab_variant():
    study = show("configs/sweep/paper-gsm8k.yaml")
    assert "rule: study\n" in study and "RLHFlow/ArmoRM-Llama3-8B-v0.1" in study and "reward_model_kind: armo" in study
    assert "execute_code: false" in study and "vote_weight: raw" in study
    lab = show("configs/sweep/paper-gsm8k-lab.yaml")
    assert "rule: lab\n" in lab and "execute_code: true" in lab
    math = show("configs/sweep/paper-math.yaml")
    assert "prompt: minerva" in math and "rule: study" in math


@pytest.mark.slow
def test_paper_grpo_recipes_use_the_study_reward_and_verl_weight_decay():
    for recipe in ("paper.yaml", "paper_d512.yaml", "paper_d1024.yaml", "paper_d2048.yaml"):
        text = show(f"configs/grpo/{recipe}")
        assert "rule: study_grpo" in text and "weight_decay: 0.01" in text, recipe
    assert "rule: lab" in show("configs/grpo/paper_lab.yaml")
    demo = show("configs/demo/paper.yaml")
    assert "d1024-E128-k2: configs/grpo/paper_d1024.yaml" in demo  # 13.2B total: the ZeRO-3 recipe


@pytest.mark.slow
def test_minerva_prompts_and_per_problem_shots():
    from inference.sweep.run import load_dataset_prompts
    from inference.sweep.schema import SweepConfig

    cfg = load_config(ROOT / "configs/sweep/paper-math.yaml", ["data.limit=3"], schema=SweepConfig)
    math = load_dataset_prompts(cfg)[0]
    assert math.template == "minerva-4shot" and math.task == "math"
    assert math.prompts[0].count("Problem:\n") == 5 and math.prompts[0].endswith("\n\nSolution:")
    assert "I hope it is correct." in math.prompts[0]
    with pytest.raises(UserError, match="0-, 2- or 4-shot"):
        load_dataset_prompts(load_config(ROOT / "configs/sweep/paper-math.yaml", ["data.num_shots=3"],
                                         schema=SweepConfig))

    overrides = ["data.datasets=[gsm8k]", "data.num_shots=2", "data.limit=4", "models=[x]"]
    per_problem = load_dataset_prompts(load_config(ROOT / "configs/sweep/toy.yaml", overrides, schema=SweepConfig))[0]
    prefixes = [p.rsplit("Question: ", 1)[0] for p in per_problem.prompts]
    assert len(set(prefixes)) == 4 and all(p.count("Question: ") == 2 for p in prefixes)  # a fresh draw each
    again = load_dataset_prompts(load_config(ROOT / "configs/sweep/toy.yaml", overrides, schema=SweepConfig))[0]
    assert again.prompts == per_problem.prompts  # seeded
    fixed = load_dataset_prompts(load_config(ROOT / "configs/sweep/toy.yaml", [*overrides, "data.shots=fixed"],
                                             schema=SweepConfig))[0]
    assert len({p.rsplit("Question: ", 1)[0] for p in fixed.prompts}) == 1


def test_grpo_accuracy_reward_under_the_study_rule_reads_the_solution_column():
    from rewards import get_reward_funcs

    lab, study = get_reward_funcs(["accuracy", "accuracy"], None)[0], \
        get_reward_funcs(["accuracy"], {"accuracy": {"rule": "study_grpo"}})[0]
    solution = ["So the distance is $\\sqrt{18} = \\boxed{3\\sqrt{2}}$."]
    completions = ["The distance is $\\boxed{3}$."]
    kwargs = {"gold": ["3\\sqrt{2}"], "solution": solution, "task": ["math"]}
    assert lab(completions=completions, **kwargs) == [0.0]
    assert study(completions=completions, **kwargs) == [1.0]  # the study's reward: the gold parses as 3
    with pytest.raises(UserError, match="study_grpo"):
        get_reward_funcs(["accuracy"], {"accuracy": {"rule": "verl"}})


def test_pure_bf16_adamw_is_refused_unless_asked_for():
    from rl.train import check_master_weights

    def cfg(dtype, allow=False, accelerate_config=None):
        return SimpleNamespace(model=SimpleNamespace(dtype=dtype, allow_pure_bf16=allow),
                               launch=SimpleNamespace(accelerate_config=accelerate_config))

    args = SimpleNamespace(deepspeed=None)
    with pytest.raises(UserError, match="allow_pure_bf16"):
        check_master_weights(cfg("bfloat16"), args)
    check_master_weights(cfg("bfloat16", allow=True), args)
    check_master_weights(cfg("bfloat16", accelerate_config="configs/deepspeed/zero2.yaml"), args)
    check_master_weights(cfg("float32"), args)


@pytest.mark.slow
def test_rule_audit_reproduces_the_study_reward_on_math500(tmp_path):
    out = tmp_path / "audit.json"
    subprocess.run([sys.executable, "-m", "moelab.cli", "rule-audit", "--dataset", "math500", "--out", str(out)],
                   check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(out.read_text())
    accepted = result["accepted"]
    assert accepted["study_grpo"] == 391 and accepted["study"] == 0  # the study's GRPO rule: 391/500
    assert accepted["lab"] >= 495  # 500 on an idle machine (committed file); a loaded one may time a check out
    committed = json.loads((ROOT / "docs/results/rule-audit-math500.json").read_text())
    assert committed["accepted"] == {"lab": 500, "study": 0, "study_grpo": 391}


def test_sweep_vote_weight_follows_what_the_score_column_holds():
    from inference.sweep.run import _vote_weight

    def cfg(how, best):
        return SimpleNamespace(aggregate=SimpleNamespace(vote_weight=how),
                               scoring=SimpleNamespace(best_of_n_score=best))

    assert _vote_weight(cfg("auto", "mean_logprob")) == "exp"  # the column is named score but holds logprobs
    assert _vote_weight(cfg("auto", "reward_model")) == "auto"  # decided from the scores (resolve_vote_weight)
    assert _vote_weight(cfg("raw", "reward_model")) == "raw"  # the study's sum, as its recipes ask
