"""The toy recipe as 2 processes under DeepSpeed ZeRO-2 and ZeRO-3 on CPU (gloo), through `moelab grpo`.

Each run relaunches itself with `accelerate launch` (rl.launch); the first one in a fresh environment
also JIT-compiles DeepSpeed's shared-memory comm extension (~60 s, cached for the second).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1]
TOY_RECIPE = LAB / "configs" / "grpo" / "toy.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_mixtral import tiny_mixtral

    return tiny_mixtral(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("stage", [2, 3])
def test_toy_recipe_runs_as_two_processes_under_zero(stage, tiny_dir, tmp_path, monkeypatch):
    from rl.cli import run

    monkeypatch.setenv("MOELAB_REGISTRY", str(tmp_path / "registry.jsonl"))
    out = tmp_path / f"zero{stage}"
    overrides = [f"model.name={tiny_dir}", f"output_dir={out}", "max_steps=2", "grpo.per_device_train_batch_size=8",
                 "grpo.max_completion_length=16", "eval.limit=4", "eval.max_new_tokens=16",
                 "checkpoints.save_steps=2", "moe.log_expert_load_steps=1", "launch.num_processes=2",
                 f"launch.accelerate_config=configs/deepspeed/zero{stage}_cpu.yaml",
                 f"launch.main_process_port={29600 + stage}"]
    assert run(argparse.Namespace(recipe=str(TOY_RECIPE), overrides=overrides)) == 0
    config = json.loads((out / "grpo_config.json").read_text())
    assert config["ddp_backend"] == "gloo"
    history = json.loads((out / "log_history.json").read_text())
    steps = [h for h in history if "loss" in h]
    assert [h["step"] for h in steps] == [1, 2]
    assert all("moe/max_over_mean" in h for h in steps)
    assert (out / "final" / "model.safetensors").is_file()  # ZeRO-3: gathered full weights on save
    from checkpoints_index.loading import load_checkpoint

    model, _ = load_checkpoint(str(out / "final"))
    assert model.config.num_local_experts == 8
