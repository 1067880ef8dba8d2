"""`moelab rehearse`: the plan's numbers against their sources, the cuts, the failure path, and (slow) every
shipped paper recipe rehearsed end to end at 2 layers with every stage ok."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from moelab.cli import main

REPO = Path(__file__).resolve().parents[1]
PAPER_RECIPES = sorted({*REPO.glob("configs/*/paper*.yaml"), *REPO.glob("configs/eval/study-*.yaml"),
                        *REPO.glob("configs/taskloss/study-*.yaml")})


def _recipe(path: str, overrides: list[str] | None = None):
    from moelab.recipes import load_recipe

    return load_recipe(REPO / path, overrides or [])


def test_params_are_the_index_counts_of_the_released_names():
    from moelab.rehearse_plan import model_entry

    # /work/shared/research/checkpoints.csv (the released names' labels reproduced by the formula)
    assert model_entry("d512-E8-k2")["total_params"] == 320_160_256
    assert model_entry("d512-E8-k2")["active_params"] == 169_165_312
    entry = model_entry("llm-jp/optimal-sparsity-math-d1024-E16-k2-1.9B-A470M")
    assert (entry["total_params"], entry["active_params"]) == (1_881_965_568, 472_679_424)
    assert entry["forward_params"] == 472_679_424 - 99_584 * 1024  # inference/ttc/compute.py: no input embedding


@pytest.mark.parametrize("recipe", ["configs/grpo/paper.yaml", "configs/grpo/paper_d1024.yaml",
                                    "configs/grpo/paper_d2048.yaml"])
def test_zero_memory_is_deepspeeds_own_estimate(recipe):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    from checkpoints_index.index import resolve
    from moelab.rehearse_plan import grpo_plan, largest_layer_params

    cfg = _recipe(recipe)
    plan = grpo_plan(cfg)
    info = resolve(cfg.model.name)
    gpus, nodes = cfg.launch.num_processes, cfg.launch.num_machines
    ds = plan["deepspeed"]
    if ds["zero_stage"] == 2:
        _, gpu = estimate_zero2_model_states_mem_needs(info.total_params, gpus, nodes, cpu_offload=False)
    else:
        _, gpu, _ = estimate_zero3_model_states_mem_needs(
            info.total_params, largest_layer_params(info), gpus, nodes, cpu_offload=ds["offload_optimizer"],
            cpu_offload_params=ds["offload_param"], zero_init=ds["zero_init"])
    assert plan["memory"]["model_states_gib_per_gpu"] == round(gpu / 2**30, 3)
    assert plan["gpus"] == gpus * nodes
    if recipe.endswith("paper.yaml"):  # ZeRO-2, 8 GPUs: 2 bytes/param replicated + 18 bytes/param sharded
        assert gpu == 2 * 1_881_965_568 + int(18 * 1_881_965_568 / 8)
    if recipe.endswith("d2048.yaml"):
        assert ds["offload_param"] and ds["offload_optimizer"]


def test_grpo_tokens_and_flops_follow_the_recipe_and_the_compute_definition():
    from inference.ttc.compute import generation_flops
    from moelab.rehearse_plan import grpo_plan

    plan = grpo_plan(_recipe("configs/grpo/paper.yaml"))
    completions = 420 * 16 * 10 * 8  # steps x per device x accumulation x GPUs: 1,280 completions per update
    assert plan["completions"] == completions
    assert plan["tokens_to_generate"] == completions * 1024
    assert plan["tokens_to_score"] == completions * (512 + 1024)
    assert plan["generation_flops"] == generation_flops(plan["forward_params"], completions, 512, 1024)


def test_sweep_plan_is_problems_times_samples_times_max_tokens():
    from moelab.rehearse_plan import sweep_plan

    plans = sweep_plan(_recipe("configs/sweep/paper-gsm8k.yaml"))
    assert len(plans) == 16
    first = plans[0]
    assert (first["problems"], first["samples_per_problem"]) == (1319, 128 + 1)  # + the greedy sample
    assert first["tokens_to_generate"] == 1319 * 129 * 1024


def test_cuts_keep_the_smallest_members_and_map_gpu_settings_to_cpu(tmp_path):
    from moelab.rehearse import CUTS, Context, cuts_for, kept_models

    ctx = Context(on_gpu=False, real_data=False, standin_root=tmp_path, port=12345)
    cfg = _recipe("configs/grpo/paper_d1024.yaml")
    values = cuts_for("grpo", cfg, ctx)
    assert values["grpo.per_device_train_batch_size"] == 1
    assert values["grpo.gradient_accumulation_steps"] == values["grpo.steps_per_generation"] == cfg.grpo.num_generations
    assert values["launch.accelerate_config"] == "configs/deepspeed/zero3_cpu.yaml"
    assert values["launch.num_processes"] == 2 and values["data.dataset"] == "math500"
    assert values["max_steps"] == CUTS["grpo"]["max_steps"]
    d2048 = cuts_for("grpo", _recipe("configs/grpo/paper_d2048.yaml"), ctx)
    assert d2048["grpo.vllm_mode"] == "colocate" and any("vllm_mode=server" in n for n in ctx.not_rehearsed)
    assert kept_models(_recipe("configs/sweep/paper-gsm8k.yaml")) == ["d512-E8-k2"]
    assert kept_models(_recipe("configs/demo/paper.yaml")) == ["d512-E8-k2", "d512-E8-k8"]


def test_a_failed_stage_exits_non_zero_and_still_writes_the_json(tmp_path, monkeypatch, capsys):
    import moelab.rehearse as rehearse

    def boom(argv):
        os.write(2, b"[rank0]: ValueError: the root cause\n")  # as a failing worker process prints it
        raise RuntimeError("boom: the job broke\nsecond line")

    monkeypatch.setattr(rehearse, "_run_command", boom)
    out = tmp_path / "r"
    assert main(["rehearse", "configs/eval/toy.yaml", "--out", str(out)]) == 1
    report = json.loads((out / "rehearsal.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["plan"]["status"] == stages["recipe"]["status"] == "ok"
    assert stages["eval"] == {**stages["eval"], "status": "failed",
                              "error": "RuntimeError: boom: the job broke <- ValueError: the root cause"}
    assert stages["eval"]["wall_s"] >= 0 and stages["eval"]["peak_rss_mib"]["self"] > 0
    assert "rehearsal failed at stage eval: RuntimeError: boom" in capsys.readouterr().err


@pytest.mark.parametrize("argv, fix", [(["configs/toy/train.yaml"], "loads no model"),
                                       (["configs/eval/toy.yaml", "--layers", "-1"], "--layers"),
                                       (["configs/eval/toy.yaml", "limit=-5"], "limit")])
def test_bad_input_is_one_line_and_status_2(argv, fix, tmp_path, capsys):
    assert main(["rehearse", *argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fix in err[0]


# ------------------------------------------------------------------------------------------------- slow
@pytest.fixture(scope="module")
def shared_models(tmp_path_factory):
    """One materialization per (model, depth) for every recipe of the module."""
    return tmp_path_factory.mktemp("rehearse-models")


def _host_gib_for_grpo(recipe: str, layers: int = 2) -> float:
    """Host memory a CPU GRPO rehearsal needs: 2 processes, each holding the fp32 stand-in policy, its
    gradients and (ZeRO-2) half the Adam states, the KL reference model, a colocated vLLM copy with its KV
    cache, and the libraries. Per parameter, as measured by the committed full-depth d512-E8-k2 rehearsal
    (its largest process's peak RSS over its parameter count, libraries included)."""
    from checkpoints_index.index import count_params, resolve

    cfg = _recipe(recipe)
    if cfg.kind != "grpo":
        return 0.0
    measured = json.loads((REPO / "docs" / "results" / "rehearse-d512-full-grpo.json").read_text())
    peak_mib = next(s["peak_rss_mib"]["largest_child"] for s in measured["stages"] if s["name"] == "grpo")
    bytes_per_param = peak_mib * 2**20 / measured["plan"]["jobs"][0]["total_params"]
    info = resolve(cfg.model.name)
    sizes = {f: getattr(info, f) for f in ("d_model", "num_heads", "num_experts", "top_k", "ffn_hidden", "vocab_size")}
    total, _ = count_params(num_layers=layers, **sizes)
    return 2 * bytes_per_param * total / 2**30


@pytest.mark.slow
@pytest.mark.vllm_engine  # every paper recipe generates with vLLM (GRPO: colocated)
@pytest.mark.parametrize("recipe", [str(p.relative_to(REPO)) for p in PAPER_RECIPES])
def test_every_paper_recipe_rehearses_at_two_layers(recipe, shared_models, tmp_path, monkeypatch):
    import psutil

    import moelab.rehearse as rehearse

    need, free = _host_gib_for_grpo(recipe), psutil.virtual_memory().available / 2**30
    if need > free:
        pytest.skip(f"{recipe}: its 2-layer GRPO rehearsal needs ~{need:.0f} GiB of host memory, {free:.0f} GiB free")

    monkeypatch.setattr(rehearse, "MODELS_DIR", shared_models)
    monkeypatch.setenv("MOELAB_REGISTRY", str(tmp_path / "outer-registry.jsonl"))
    out = tmp_path / "r"
    status = main(["rehearse", recipe, "--layers", "2", "--out", str(out)])
    report = json.loads((out / "rehearsal.json").read_text())
    assert status == 0, [s for s in report["stages"] if s["status"] != "ok"]
    assert all(s["status"] == "ok" for s in report["stages"]) and len(report["stages"]) >= 4
    assert report["plan"]["jobs"] and all(j.get("total_params") for j in report["plan"]["jobs"])
