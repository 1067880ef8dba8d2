"""The SFT-on-gold control for a GRPO run: the same member, problems and eval, trained on gold solutions.

Why: a GRPO gain on a checkpoint whose pretraining stopped at a non-zero learning rate mixes two
things, what the reward taught and what any further optimisation at a small LR would have finished.
Plain supervised fine-tuning on the gold solutions of the same training problems separates them:
when a few SFT steps raise greedy accuracy as much as GRPO does, the GRPO gain says little about RL.
So every GRPO result the lab reports on the toy family stands beside this control.

The control reads the member's GRPO recipe and keeps everything it can: the model and its dtype,
the training problems (`data`), the prompt (`data.prompt_style`: the toy tokenizer's chat template
renders `Question: q\\nAnswer:`), the greedy eval sets and the reward that scores them
(`rl.callbacks.GreedyEvalCallback`, writing the same `eval.csv` / `eval_samples.jsonl`, so
`rl.report`'s paired bootstrap CI applies unchanged). What differs: TRL's `SFTTrainer` with the
loss on the completion (the gold solution + EOS) only, a constant LR, and its own step budget.

    from rl.sft_control import run_sft_control
    run_sft_control(grpo_recipe, output_dir, steps=10, learning_rate=1e-4, batch_size=64, seed=0)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from core.errors import UserError


def sft_dataset(cfg: Any, tokenizer: Any) -> Any:
    """Prompt/completion pairs of the GRPO recipe's training problems (prompt as the policy sees it)."""
    from datasets import Dataset

    from rl.train import load_rows, render

    d = cfg.data
    rows = load_rows(d.dataset, d.split, d.limit, d.shuffle_seed, d.toy_num_problems, d.task)
    return Dataset.from_dict({"prompt": [render(r["question"], d.prompt_style, tokenizer) for r in rows],
                              "completion": [" " + r["solution"] for r in rows]})


def copy_before_eval(run_dir: Path, out: Path, eval_sets: dict[str, dict]) -> bool:
    """Copy a finished GRPO run's first eval (step 0: the same member, eval sets and greedy decoding)
    into `out`, so the control does not decode it again; False (nothing copied) unless every eval set
    is there in full."""
    import csv

    from rl.report import SAMPLES_FILE

    samples = [json.loads(line) for line in (run_dir / SAMPLES_FILE).read_text().splitlines() if line.strip()] \
        if (run_dir / SAMPLES_FILE).is_file() else []
    first = [r for r in samples if r["step"] == 0]
    counts = {name: sum(r["dataset"] == name for r in first) for name in eval_sets}
    if any(counts[name] != len(data["ids"]) for name, data in eval_sets.items()):
        return False
    with (run_dir / "eval.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["step"] == "0"]
    with (out / "eval.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "dataset", "accuracy", "num_problems"])
        writer.writeheader()
        writer.writerows(rows)
    (out / SAMPLES_FILE).write_text("".join(json.dumps(r) + "\n" for r in first))
    return True


def run_sft_control(cfg: Any, output_dir: str | Path, *, steps: int = 10, learning_rate: float = 1e-4,
                    batch_size: int = 64, seed: int = 0, before_eval_from: str | Path | None = None) -> dict:
    """Train `cfg.model` on gold solutions for `steps` steps; returns (and writes) `summary.json` with
    the paired before -> after change on every eval set of the recipe. A finished run is reused.
    `before_eval_from`: a finished GRPO run of the same recipe, whose step-0 eval is the control's too."""
    from omegaconf import OmegaConf
    from trl import SFTConfig, SFTTrainer

    from rl.callbacks import GreedyEvalCallback
    from rl.train import build_eval_sets, eval_change_summary, load_policy, reward_functions

    out = Path(output_dir)
    summary_path = out / "summary.json"
    settings = {"steps": steps, "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed,
                "base_model": str(cfg.model.name)}
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("settings") == settings:
            return summary
    if steps < 1 or batch_size < 1:
        raise UserError(f"SFT control: steps and batch_size must be >= 1; got {steps}, {batch_size}")
    if not cfg.eval.datasets:
        raise UserError("SFT control: the GRPO recipe has no eval.datasets, so there is nothing to compare")
    if cfg.threads > 0:
        import torch

        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("eval.csv", "eval_samples.jsonl"):
        (out / stale).unlink(missing_ok=True)  # a rerun with other settings starts its eval afresh
    model, tokenizer = load_policy(cfg)
    eval_sets = build_eval_sets(cfg, tokenizer)
    reused = before_eval_from is not None and copy_before_eval(Path(before_eval_from), out, eval_sets)
    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch_size,
                     learning_rate=learning_rate, lr_scheduler_type="constant", warmup_steps=0,
                     weight_decay=0.0, seed=seed, data_seed=seed, completion_only_loss=True, logging_steps=1,
                     save_strategy="no", report_to=[], use_cpu=not _has_gpu(), dataloader_num_workers=0,
                     max_length=cfg.data.max_prompt_length + cfg.grpo.max_completion_length, bf16=False,
                     disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(cfg, tokenizer), processing_class=tokenizer)
    score = reward_functions(["accuracy"], {"accuracy": dict(cfg.rewards.options.get("accuracy") or {})})[0]
    trainer.add_callback(GreedyEvalCallback(tokenizer, eval_sets, score, out, 0, cfg.eval.max_new_tokens,
                                            cfg.eval.batch_size))  # skips step 0 when it was copied
    start = time.time()
    trainer.train()
    summary = {"settings": settings, "train_seconds": round(time.time() - start, 1),
               "before_eval_from": str(before_eval_from) if reused else None,
               "recipe": OmegaConf.to_container(cfg.data, resolve=True), "eval_change": eval_change_summary(out)}
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _has_gpu() -> bool:
    from core.platform import has_nvidia_gpu

    return has_nvidia_gpu()
