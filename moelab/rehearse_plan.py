"""The plan of a real run, from its recipe alone: what `moelab rehearse` prints beside the rehearsal.

A rehearsal runs cut-down work on random stand-ins, so its own sizes say nothing about the real run.
This module sizes the real one from the recipe as written (the real models, every problem, every
sample, every step), with nothing loaded:
- parameters: total and active from the checkpoint index (`checkpoints_index.index.count_params`);
- GPU memory of model states under the GRPO recipe's ZeRO stage and GPU count: DeepSpeed's own
  estimators (`estimate_zero2_model_states_mem_needs`, `estimate_zero3_model_states_mem_needs`, the
  functions behind its `_all_cold` printers), called with the index's counts. They count parameters,
  gradients and Adam states only: activations, the colocated vLLM engine's share and the KV cache come
  on top. Inference jobs (sweep, eval, task loss) hold bf16 weights only: 2 bytes per parameter;
- tokens: upper bounds, problems x samples x max tokens. A prompt's tokens are bounded by its UTF-8
  bytes + BOS (every token of a byte-level or BPE tokenizer covers at least one byte), so no real
  tokenizer is needed; GRPO prompts by `data.max_prompt_length`;
- FLOPs: `inference.ttc.compute.generation_flops` (2 x non-embedding active parameters per token, prompt
  and generated) on those bounds; GRPO training adds the backward pass, 2x the forward (Kaplan 2020,
  C = 6N per token), over every prompt + completion token, once for the policy and once more forward
  for the reference model when `grpo.beta > 0`.
A number that cannot be known offline (a hub dataset's size, lm-eval's requests) is null with a reason,
never a guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from checkpoints_index.index import CheckpointInfo, resolve
from core.errors import UserError
from inference.ttc.compute import forward_params_of, generation_flops

GIB = 2**30
BF16_BYTES = 2


def model_entry(name: str) -> dict[str, Any]:
    """Index sizes of one model as the real run loads it; a model the index cannot size gets nulls."""
    try:
        info = resolve(name)
    except UserError as err:
        return {"model": name, "total_params": None, "active_params": None, "forward_params": None,
                "note": str(err).splitlines()[0]}
    return {"model": name, "hf_id": info.hf_id, "local_path": info.local_path, "num_layers": info.num_layers,
            "total_params": info.total_params, "active_params": info.active_params,
            "forward_params": int(_forward(info)), "weights_gib_bf16": round(info.total_params * BF16_BYTES / GIB, 3)}


def _forward(info: CheckpointInfo) -> float:
    return forward_params_of(info.active_params, info.vocab_size, info.d_model, info.tied_embeddings)


def largest_layer_params(info: CheckpointInfo) -> int:
    """The largest module ZeRO-3 gathers at once: the embedding (or lm_head, V x D) or one layer's experts.
    Transformers 5 keeps a layer's experts fused, and the lab registers the sparse-MoE block as a ZeRO-3
    leaf (rl.trainer), so all E experts of a layer plus its router are gathered together."""
    experts = info.num_experts * 3 * info.d_model * info.ffn_hidden + info.d_model * info.num_experts
    return max(info.vocab_size * info.d_model, experts)


def deepspeed_settings(accelerate_config: str | None, on_gpu: bool = True) -> dict[str, Any]:
    """ZeRO stage and offload devices of an accelerate yaml (configs/deepspeed/), as `rl.launch` picks it."""
    from rl.launch import resolve_accelerate_config

    path = resolve_accelerate_config(accelerate_config, on_gpu)
    ds = (yaml.safe_load(Path(path).read_text()) or {}).get("deepspeed_config", {})
    return {"accelerate_config": str(Path(path).relative_to(Path.cwd())) if Path(path).is_relative_to(Path.cwd())
            else str(path), "zero_stage": int(ds.get("zero_stage", 0)),
            "offload_optimizer": ds.get("offload_optimizer_device", "none") == "cpu",
            "offload_param": ds.get("offload_param_device", "none") == "cpu",
            "zero_init": bool(ds.get("zero3_init_flag", False))}


def zero_model_states(info: CheckpointInfo, stage: int, gpus_per_node: int, nodes: int, offload_optimizer: bool,
                      offload_param: bool, zero_init: bool) -> dict[str, Any]:
    """Per-GPU and per-node CPU memory of model states, from DeepSpeed's estimator for `stage`."""
    if stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            info.total_params, largest_layer_params(info), num_gpus_per_node=gpus_per_node, num_nodes=nodes,
            cpu_offload=offload_optimizer, cpu_offload_params=offload_param, zero_init=zero_init)
        call = "deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs"
    elif stage in (1, 2):
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        cpu, gpu = estimate_zero2_model_states_mem_needs(info.total_params, num_gpus_per_node=gpus_per_node,
                                                         num_nodes=nodes, cpu_offload=offload_optimizer)
        call = "deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs"
    else:
        return {"estimator": None, "note": f"ZeRO stage {stage}: DeepSpeed ships no estimator for it"}
    return {"estimator": call, "model_states_gib_per_gpu": round(gpu / GIB, 3),
            "cpu_gib_per_node": round(cpu / GIB, 3), "largest_layer_params": largest_layer_params(info)}


def grpo_plan(cfg: Any) -> dict[str, Any]:
    """Completions, tokens, FLOPs and ZeRO memory of a `grpo` recipe's run on its real model and GPUs."""
    entry = model_entry(cfg.model.name)
    g, launch = cfg.grpo, cfg.launch
    gpus = launch.num_processes * launch.num_machines
    if cfg.max_steps > 0:
        completions = cfg.max_steps * g.per_device_train_batch_size * g.gradient_accumulation_steps * gpus
        completions //= g.num_iterations
        steps_note = f"{cfg.max_steps} optimizer steps"
    else:
        completions, steps_note = None, "max_steps=-1: the epoch count over the train set decides (not sized here)"
    plan: dict[str, Any] = {"job": "grpo", **entry, "gpus": gpus, "nodes": launch.num_machines, "steps": steps_note,
                            "completions": completions, "max_prompt_tokens": cfg.data.max_prompt_length,
                            "max_completion_tokens": g.max_completion_length}
    if completions is not None:
        seq = cfg.data.max_prompt_length + g.max_completion_length
        plan["tokens_to_generate"] = completions * g.max_completion_length
        plan["tokens_to_score"] = completions * seq * g.num_iterations
    info = _info(cfg.model.name)
    if info is not None:
        ds = deepspeed_settings(launch.accelerate_config)
        plan["deepspeed"] = ds
        plan["memory"] = zero_model_states(info, ds["zero_stage"], launch.num_processes, launch.num_machines,
                                           ds["offload_optimizer"], ds["offload_param"], ds["zero_init"])
        if completions is not None:
            n = _forward(info)
            plan["generation_flops"] = generation_flops(n, completions, cfg.data.max_prompt_length,
                                                        g.max_completion_length)
            passes = 3 + (1 if g.beta > 0 else 0)  # forward + backward (2x) of the policy, + the reference's forward
            plan["training_flops"] = passes * generation_flops(n, 1, plan["tokens_to_score"], 0)
    return plan


def _info(name: str) -> CheckpointInfo | None:
    try:
        return resolve(name)
    except UserError:
        return None


def _prompt_token_bound(prompts: list[str]) -> int:
    return sum(len(p.encode()) + 1 for p in prompts)


def sweep_plan(cfg: Any) -> list[dict[str, Any]]:
    """Per model: problems x samples x max new tokens to generate, samples to score, and FLOPs."""
    from inference.sweep.run import load_dataset_prompts, settings_from_config

    samples = sum(s.num_samples for s in settings_from_config(cfg))
    try:
        datasets = load_dataset_prompts(cfg)
        problems = sum(len(d.problems) for d in datasets)
        prompt_bound = sum(_prompt_token_bound(d.prompts) for d in datasets)
        note = None
    except UserError as err:
        problems, prompt_bound, note = None, None, f"problems not counted: {str(err).splitlines()[0]}"
    plans = []
    for model in cfg.models:
        entry = {"job": "sweep", **model_entry(model), "problems": problems, "samples_per_problem": samples,
                 "max_new_tokens": cfg.sampling.max_new_tokens, "reward_model": cfg.scoring.reward_model}
        if problems is not None:
            entry["tokens_to_generate"] = problems * samples * cfg.sampling.max_new_tokens
            entry["samples_to_score"] = problems * samples
            entry["prompt_tokens_bound"] = prompt_bound
            if entry.get("forward_params"):
                entry["generation_flops"] = generation_flops(entry["forward_params"], samples, prompt_bound,
                                                             problems * cfg.sampling.max_new_tokens)
        if note:
            entry["note"] = note
        plans.append(entry)
    return plans


def eval_plan(cfg: Any) -> list[dict[str, Any]]:
    return [{"job": "eval", **model_entry(m), "tasks": list(cfg.tasks), "limit": cfg.limit,
             "tokens_to_generate": None, "note": "lm-eval builds each task's requests itself: not sized here"}
            for m in cfg.models]


def taskloss_plan(cfg: Any, datasets: list[str] | None = None) -> list[dict[str, Any]]:
    """Per model and set: examples and the tokens scored (prompt + answer, bounded by bytes + BOS)."""
    from omegaconf import OmegaConf

    from tasks.taskloss_sets import load_taskloss_set

    plans = []
    for dataset in datasets or [cfg.dataset]:
        try:
            files = OmegaConf.to_container(cfg.data_files) or None
            _, pairs = load_taskloss_set(dataset, cfg.num_shots, cfg.shots_seed, files)
            pairs = pairs[:cfg.limit] if cfg.limit else pairs
            tokens = sum(len((p["prompt"] + p["answer"]).encode()) + 1 for p in pairs)
            examples, note = len(pairs), None
        except (UserError, OSError, ValueError) as err:
            examples, tokens, note = None, None, f"set not loaded here: {str(err).splitlines()[0]}"
        for m in cfg.models:
            entry = {"job": "taskloss", **model_entry(m), "dataset": dataset, "examples": examples,
                     "tokens_to_score": tokens}
            if tokens is not None and entry.get("forward_params"):
                entry["flops"] = generation_flops(entry["forward_params"], 1, tokens, 0)
            if note:
                entry["note"] = note
            plans.append(entry)
    return plans


def totals(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums over jobs of every countable column (null when any job could not size it)."""
    keys = ["tokens_to_generate", "tokens_to_score", "samples_to_score", "generation_flops", "training_flops", "flops"]
    out: dict[str, Any] = {}
    for key in keys:
        values = [j.get(key) for j in jobs if key in j]
        if values:
            out[key] = None if any(v is None for v in values) else sum(values)
    grpo_mem = [j["memory"]["model_states_gib_per_gpu"] for j in jobs if j.get("memory", {}).get("estimator")]
    if grpo_mem:
        out["max_model_states_gib_per_gpu"] = max(grpo_mem)
    weights = [j["weights_gib_bf16"] for j in jobs if j.get("weights_gib_bf16") is not None]
    if weights:
        out["max_weights_gib_bf16"] = max(weights)
    return out


def plan_for(cfg: Any) -> dict[str, Any]:
    """Every job the recipe would run, sized, and their totals. Pipelines (deficit, demo, posttrain)
    are sized through the sub-recipes they would load, with the same overrides they would give."""
    import json

    from moelab.recipes import load_recipe

    def sub(recipe: str, overrides: list[str]) -> Any:
        return load_recipe(recipe, overrides)

    jobs: list[dict[str, Any]] = []
    kind = cfg.kind
    if kind == "grpo":
        jobs.append(grpo_plan(cfg))
    elif kind == "sweep":
        jobs += sweep_plan(cfg)
    elif kind == "eval":
        jobs += eval_plan(cfg)
    elif kind == "taskloss":
        jobs += taskloss_plan(cfg)
    elif kind in ("deficit", "demo"):
        from moelab.deficit import select_models
        from moelab.members import member_grpo_recipe

        run_dir = Path("outputs/rehearse/plan")
        models = select_models(cfg) if kind == "deficit" else list(cfg.models)
        as_models = [f"models={json.dumps(models)}"]
        if kind == "deficit":
            if cfg.eval.recipe and not cfg.eval.output:
                jobs += eval_plan(sub(cfg.eval.recipe, [*cfg.eval.overrides, *as_models]))
            if cfg.taskloss.recipe and not cfg.taskloss.output:
                jobs += taskloss_plan(sub(cfg.taskloss.recipe, [*cfg.taskloss.overrides, *as_models]),
                                      list(cfg.taskloss.datasets) or None)
            sweep_recipe, sweep_overrides = (cfg.sweep.recipe if not cfg.sweep.output else None), cfg.sweep.overrides
            grpo_recipes = {m: cfg.grpo.recipe for m in models} if cfg.grpo.recipe and not cfg.grpo.after_sweep else {}
            grpo_overrides = list(cfg.grpo.overrides)
        else:
            sweep_recipe, sweep_overrides = cfg.sweep_recipe, cfg.sweep_overrides
            grpo_recipes = {m: cfg.grpo_recipes.get(m, cfg.grpo_recipe) for m in models}
            grpo_overrides = list(cfg.grpo_overrides)
            if cfg.deficit_recipe:
                deficit = sub(cfg.deficit_recipe, list(cfg.deficit_overrides))
                for instrument in ("eval", "taskloss"):
                    job = deficit[instrument]
                    if job.recipe and not job.output:
                        sub_cfg = sub(job.recipe, [*job.overrides, *as_models])
                        jobs += eval_plan(sub_cfg) if instrument == "eval" else taskloss_plan(
                            sub_cfg, list(job.datasets) or None)
        rounds = ["before"] + (["after"] if grpo_recipes else [])
        if sweep_recipe:
            sweep_cfg = sub(sweep_recipe, [*sweep_overrides, *as_models])
            for label in rounds:
                jobs += [{**j, "job": f"sweep ({label} GRPO)"} for j in sweep_plan(sweep_cfg)]
        for member, recipe in grpo_recipes.items():
            jobs.append(grpo_plan(member_grpo_recipe(recipe, grpo_overrides, member, run_dir)))
    elif kind == "posttrain":
        from moelab.members import member_grpo_recipe

        for member in cfg.models:
            for seed in cfg.seeds:
                overrides = [*cfg.grpo_overrides, f"grpo.seed={seed}"]
                plan = grpo_plan(member_grpo_recipe(cfg.grpo_recipe, overrides, member, Path("outputs/rehearse/plan")))
                jobs.append({**plan, "seed": seed})
    else:
        raise UserError(f"moelab rehearse: recipe kind {kind!r} loads no model; rehearse a sweep, grpo, eval, "
                        f"taskloss, deficit, demo or posttrain recipe")
    return {"jobs": jobs, "totals": totals(jobs)}
