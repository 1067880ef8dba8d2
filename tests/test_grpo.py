"""`moelab grpo`: recipe validation, MoE metrics, a toy run that learns, kill-and-resume, NaN stop.

Plumbing tests use a tiny random Mixtral (tests/tiny_mixtral.py); the learning test uses a toy family member.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.config import load_config
from core.errors import UserError
from moelab.recipes import load_recipe
from rl.schema import GRPORecipe

LAB = Path(__file__).resolve().parents[1]
TOY_RECIPE = LAB / "configs" / "grpo" / "toy.yaml"
TOY_MEMBER = "toy-d64-E8-k2"


@pytest.fixture(autouse=True)
def private_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("MOELAB_REGISTRY", str(tmp_path / "registry.jsonl"))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_mixtral import tiny_mixtral

    return tiny_mixtral(tmp_path_factory.mktemp("tiny"))


def plumbing_overrides(model: str, out: Path, steps: int) -> list[str]:
    """Fast settings: a few small steps, a small eval set, checkpoints every 2 steps."""
    return [f"model.name={model}", f"output_dir={out}", f"max_steps={steps}", "grpo.per_device_train_batch_size=16",
            "grpo.max_completion_length=24", "eval.limit=8", "eval.max_new_tokens=24", "eval.steps=0",
            "checkpoints.save_steps=2", "moe.log_expert_load_steps=1"]


def run_cli(recipe: Path, overrides: list[str]) -> int:
    from rl.cli import run

    return run(argparse.Namespace(recipe=str(recipe), overrides=overrides))


# ------------------------------------------------------------------------------------------ recipes
def test_recipes_resolve_and_router_coefficient_is_required(tmp_path):
    for recipe in sorted((LAB / "configs" / "grpo").glob("*.yaml")):
        cfg = load_recipe(recipe)
        assert cfg.kind == "grpo" and cfg.moe.router_aux_loss_coef is not None, recipe.name
    paper = load_recipe(LAB / "configs" / "grpo" / "paper.yaml")
    assert (paper.grpo.num_generations, paper.grpo.beta, paper.grpo.epsilon, paper.max_steps) == (5, 0.001, 0.2, 420)
    assert paper.moe.router_aux_loss_coef == 0.0
    bare = tmp_path / "bare.yaml"
    bare.write_text("kind: grpo\noutput_dir: x\nmodel: {name: toy-d64-E8-k2}\ndata: {dataset: toy}\n")
    with pytest.raises(UserError, match="router_aux_loss_coef"):
        load_recipe(bare)
    with pytest.raises(UserError, match="no_such_knob"):
        load_recipe(TOY_RECIPE, ["grpo.no_such_knob=1"])


def test_grpo_config_carries_the_recipe_and_rejects_unknown_extras(tmp_path):
    from rl.train import build_grpo_config

    overrides = [f"output_dir={tmp_path}", "grpo.beta=0.04", "grpo.extra={top_entropy_quantile: 0.5}"]
    args = build_grpo_config(load_recipe(TOY_RECIPE, overrides))
    assert (args.beta, args.num_generations, args.router_aux_loss_coef) == (0.04, 8, 0.0)
    assert args.top_entropy_quantile == 0.5
    cfg = load_recipe(TOY_RECIPE, [f"output_dir={tmp_path}", "grpo.extra={not_a_field: 1}"])
    with pytest.raises(UserError, match="not_a_field"):
        build_grpo_config(cfg)


def test_every_field_a_recipe_passes_is_a_field_of_the_installed_trl_grpo_config():
    """A field TRL renames or drops fails here, by name, instead of vanishing from the runs."""
    import dataclasses

    import trl
    from omegaconf import OmegaConf

    from rl.schema import GRPOSection
    from rl.train import LAB_ONLY_GRPO_FIELDS, grpo_config_kwargs

    trl_fields = {f.name for f in dataclasses.fields(trl.GRPOConfig)}
    schema_fields = {f.name for f in dataclasses.fields(GRPOSection)} - set(LAB_ONLY_GRPO_FIELDS)
    for recipe in sorted((LAB / "configs" / "grpo").glob("*.yaml")):
        passed = set(grpo_config_kwargs(OmegaConf.to_object(load_recipe(recipe))))
        assert schema_fields <= passed, f"{recipe.name}: grpo fields not passed: {schema_fields - passed}"
        assert passed <= trl_fields, f"{recipe.name}: not GRPOConfig fields in trl {trl.__version__}: " \
                                     f"{sorted(passed - trl_fields)}"


# ---------------------------------------------------------------------------------------- MoE metrics
def test_expert_load_meter_counts_training_forwards_only(tiny_dir):
    from transformers import MixtralForCausalLM

    from rl.moe_metrics import ExpertLoadMeter

    model = MixtralForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    meter = ExpertLoadMeter(model)
    ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        model(ids)
    assert meter.collect() == ({}, {})
    model(ids)
    scalars, fractions = meter.collect()
    assert set(fractions) == {"layer0", "layer1"}
    for frac in fractions.values():
        assert len(frac) == 8 and abs(sum(frac) - 1) < 1e-4
    assert 1.0 <= scalars["moe/max_over_mean"] <= 8.0
    assert 0 < scalars["moe/router_entropy"] <= scalars["moe/router_entropy_uniform"] + 1e-6
    assert meter.collect() == ({}, {})  # reset after collect


# --------------------------------------------------------------------------------- runs that survive
@pytest.mark.slow
def test_kill_and_resume_ends_at_same_step_with_optimizer_restored(tiny_dir, tmp_path):
    out = tmp_path / "run"
    steps = 40  # long enough (~0.15 s a step) that the kill lands mid-run however fast the machine is
    overrides = plumbing_overrides(tiny_dir, out, steps=steps)
    # A fresh shell's environment: an earlier in-process colocated-vLLM run leaves RANK/WORLD_SIZE/MASTER_PORT
    # in this process (TRL sets them for vLLM) while its process group still holds that port; inherited, they
    # would make this run rendezvous on the same port (EADDRINUSE).
    rendezvous = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
    env = {**{k: v for k, v in os.environ.items() if k not in rendezvous},
           "PYTHONPATH": os.pathsep.join([str(LAB), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "train.log"  # its output, quoted when it ends too early
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "rl.train", str(TOY_RECIPE), *overrides], cwd=LAB, env=env,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    # The Trainer writes trainer_state.json last; any checkpoint will do (save_total_limit rotates old ones away).
    def saved() -> list[Path]:
        return list(out.glob("checkpoint-*/trainer_state.json"))

    deadline = time.time() + 240
    while not saved() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, \
        f"the run ended (status {proc.returncode}) before it could be killed:\n{log.read_text()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert saved(), "no checkpoint appeared"
    assert not (out / "final").exists(), "the run finished before it could be killed"
    killed_at = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))

    with pytest.raises(UserError, match="resume=true"):
        run_cli(TOY_RECIPE, overrides)
    assert run_cli(TOY_RECIPE, overrides + ["resume=true"]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == steps
    from rl.train import run_identity  # what the demo compares before reusing a finished run

    assert summary["identity"] == run_identity(load_config(TOY_RECIPE, overrides, schema=GRPORecipe))
    assert summary["identity"]["base_weights"].startswith("weights-")
    optimizer = torch.load(out / f"checkpoint-{steps}" / "optimizer.pt", weights_only=False)
    adam_steps = {float(state["step"]) for state in optimizer["state"].values()}
    assert adam_steps == {float(steps)}, f"Adam step count {adam_steps}: optimizer state was not restored"
    history = json.loads((out / "log_history.json").read_text())
    assert [h["step"] for h in history if "loss" in h] == list(range(1, steps + 1))  # restored history + the rest
    rows = list(csv.DictReader((out / "eval.csv").open()))
    assert [int(r["step"]) for r in rows] == [0, killed_at, steps]  # before training, on resume, at the end
    assert all(r["dataset"] == "toy" and int(r["num_problems"]) == 8 for r in rows)
    from checkpoints_index.index import resolve

    final = resolve(summary["registered"])
    assert (final.step, Path(final.local_path)) == (steps, (out / "final").resolve())
    before_last = steps - 2  # periodic ones too (save_total_limit keeps the last two)
    assert resolve(f"{summary['registered']}-step{before_last}").step == before_last
    assert (out / "expert_load.jsonl").is_file() and (out / "versions.json").is_file()
    assert json.loads((out / "grpo_config.json").read_text())["loss_type"] == "grpo"


class PoisonGradientsAfter:
    """Test fault: from the step after `step` on, the LM head's gradient is NaN (a diverged update)."""

    def __init__(self, step: int):
        self.step = step

    def __getattr__(self, name):  # every other TrainerCallback event: do nothing
        return lambda *args, **kwargs: None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            model.lm_head.weight.register_hook(lambda grad: grad * float("nan"))


@pytest.mark.slow
def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tiny_dir, tmp_path):
    from rl.train import TrainingDiverged, train

    out = tmp_path / "run"
    cfg = load_recipe(TOY_RECIPE, plumbing_overrides(tiny_dir, out, steps=5) + ["eval.datasets=[]"])
    with pytest.raises(TrainingDiverged, match=r"step 3.*last good checkpoint: .*checkpoint-2"):
        train(cfg, callbacks=(PoisonGradientsAfter(2),))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (out / "final").exists()


@pytest.mark.slow
def test_trainer_builds_without_vllm_when_the_recipe_does_not_use_it(tiny_dir, tmp_path, monkeypatch):
    """The GPU check's machine has torch but no vLLM: HF generation must not touch vLLM at all
    (it once patched `trl.generation.vllm_generation.LLM` unconditionally and failed there)."""
    from trl.generation import vllm_generation

    from rl.train import build_trainer

    monkeypatch.delattr(vllm_generation, "LLM", raising=False)  # what TRL's module looks like without vLLM
    cfg = load_config(TOY_RECIPE, plumbing_overrides(tiny_dir, tmp_path / "run", steps=1)
                      + ["eval.datasets=[]", "grpo.use_vllm=false"], schema=GRPORecipe)
    trainer, _ = build_trainer(cfg)
    assert not trainer.use_vllm and not hasattr(vllm_generation, "LLM")


# ------------------------------------------------------------------------------------------ learning
@pytest.mark.slow
def test_toy_grpo_raises_reward_on_a_fixed_problem_set(tmp_path):
    """A toy member trained by GRPO on 16 held-out problems, 8 per step: the mean reward of the last
    epoch beats the first epoch's on the same 16 problems (paired, so prompt difficulty cancels)."""
    out = tmp_path / "learn"
    overrides = [f"model.name={TOY_MEMBER}", f"output_dir={out}", "max_steps=12", "data.split=test",
                 "data.toy_num_problems=16", "grpo.per_device_train_batch_size=64", "grpo.learning_rate=1e-4",
                 "eval.datasets=[]", "checkpoints.save_steps=100", "checkpoints.register=false",
                 "moe.log_expert_load_steps=0"]
    assert run_cli(TOY_RECIPE, overrides) == 0
    history = json.loads((out / "log_history.json").read_text())
    rewards = [h["reward"] for h in history if "reward" in h]
    assert len(rewards) == 12
    first_epoch, last_epoch = sum(rewards[:2]) / 2, sum(rewards[-2:]) / 2
    print(f"mean reward: first epoch {first_epoch:.3f}, last epoch {last_epoch:.3f}")
    assert last_epoch > first_epoch + 0.1
