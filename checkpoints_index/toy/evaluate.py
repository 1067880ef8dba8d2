"""Measure the toy family: the table in `checkpoints_index/toy/README.md`, reproduced by one command.

    moelab toy eval [--models DIR ...] [--num-problems 500] [--samples 8] [--temperature 0.8] [--out DIR]

Per member: total/active parameters (counted from the loaded model), final train loss (from the
member's `training.json`), greedy accuracy, and sampled pass@1 / pass@8 at T=0.8 on the toy test
split, with the unbiased estimator of Chen et al. 2021 (eq. 1) from n samples per problem.

What it takes from the lab, so the table measures what sweeps and GRPO measure:
- problems: `tasks.datasets.load_problems("toy", ...)`, whose rows name their checker task;
- prompts and stop strings: `tasks.prompts` (the study's zero-shot QA prompt, `STUDY_STOP_STRINGS`);
- correctness: `rewards.score_samples` with the rows' task (the toy rules of `rewards.extract`),
  the verdicts a sweep or a GRPO reward gets;
- pass@k: `core.stats.pass_at_k`, the estimator the sweeps' aggregation uses.

What it keeps its own, and why:
- Generation is transformers' batched `generate` with left padding and one torch seed per run, not
  `inference.backends`: that layer sits above `checkpoints_index`, and its `TransformersBackend`
  generates one sample at a time under per-sample seeds (what the sample store needs), ~N times
  slower here and with other samples, so the published numbers would move. For ~1M-parameter models
  batched `generate` is as fast as vLLM-CPU and needs no engine start-up.
- Stop strings cut the decoded text (vLLM's `include_stop_str_in_output=False`), not `generate`:
  a batch that stops early draws fewer random numbers, which would change every later batch.
- No extraction of its own: the earlier self-contained rule (last `#### N`, else the last number)
  agreed with the toy checker on every completion of all four members (500 problems, greedy and
  8 samples each, 4,500 per member), and no test needs the family's quality gate to be independent
  of `rewards` (the independent second opinion is `rewards.audit`).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from core.errors import UserError
from tasks.prompts import STUDY_STOP_STRINGS

TABLE_COLUMNS = ["member", "num_experts", "top_k", "total_params", "active_params", "final_train_loss",
                 "greedy_accuracy", "pass_at_1", "pass_at_8", "num_problems", "train_seconds", "eval_seconds"]


def before_stop(text: str) -> str:
    """The text before the earliest of the study's stop strings (all of it when none occurs)."""
    cut = min((i for i in (text.find(s) for s in STUDY_STOP_STRINGS) if i >= 0), default=len(text))
    return text[:cut]


def generate(model, tokenizer, prompts: list[str], *, num_samples: int = 1, temperature: float = 0.0,
             max_new_tokens: int = 96, batch_size: int = 64, seed: int = 0) -> list[list[str]]:
    """`num_samples` completions per prompt (greedy when temperature == 0), decoded without specials
    and cut at the study's stop strings."""
    import torch

    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    sampled = temperature > 0
    results: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sampled,
                                 temperature=temperature if sampled else None, top_p=1.0 if sampled else None,
                                 top_k=0 if sampled else None, num_return_sequences=num_samples,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        texts = [before_stop(t) for t in tokenizer.batch_decode(out[:, enc.input_ids.shape[1]:],
                                                                 skip_special_tokens=True)]
        results.extend(texts[i:i + num_samples] for i in range(0, len(texts), num_samples))
    return results


def count_correct(problems: list[dict], completions: list[list[str]]) -> list[int]:
    """Correct completions per problem, judged by `rewards` with each problem's checker task."""
    from rewards import score_samples

    counts = [0] * len(problems)
    for task in sorted({p["task"] for p in problems}):
        index = [(i, text) for i, p in enumerate(problems) if p["task"] == task for text in completions[i]]
        verdicts = score_samples(task, [problems[i]["gold"] for i, _ in index], [text for _, text in index],
                                 problem_ids=[problems[i]["id"] for i, _ in index])
        for (i, _), verdict in zip(index, verdicts):
            counts[i] += verdict.status == "correct"
    return counts


def evaluate_member(model_dir: str | Path, problems: list[dict], *, num_samples: int = 8,
                    temperature: float = 0.8, seed: int = 0, batch_size: int = 64) -> dict[str, Any]:
    """One row of the table for the member saved in `model_dir` (`problems`: rows of `load_problems`)."""
    from transformers import AutoTokenizer, MixtralForCausalLM

    from checkpoints_index.toy.train import count_params
    from core.stats import pass_at_k
    from tasks.prompts import format_prompt

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: no config.json; pass a toy member directory")
    start = time.time()
    model = MixtralForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [format_prompt(p["question"]) for p in problems]
    greedy_correct = count_correct(problems, generate(model, tokenizer, prompts, batch_size=batch_size * 4))
    samples = generate(model, tokenizer, prompts, num_samples=num_samples, temperature=temperature,
                       batch_size=batch_size, seed=seed)
    pass_at = pass_at_k(num_samples, count_correct(problems, samples), [1, 8]).mean(axis=0)
    total, active = count_params(model)
    training_file = model_dir / "training.json"
    training = json.loads(training_file.read_text()) if training_file.is_file() else {}
    n = len(problems)
    return {"member": model_dir.name, "num_experts": model.config.num_local_experts,
            "top_k": model.config.num_experts_per_tok, "total_params": total, "active_params": active,
            "final_train_loss": training.get("final_train_loss"),
            "greedy_accuracy": sum(greedy_correct) / n, "pass_at_1": float(pass_at[0]), "pass_at_8": float(pass_at[1]),
            "num_problems": n, "train_seconds": training.get("train_seconds"),
            "eval_seconds": round(time.time() - start, 1)}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| member | E | k | total params | active params | train loss | greedy acc | pass@1 (T=0.8) "
             "| pass@8 (T=0.8) | pass@8 - pass@1 | train wall time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loss = f"{r['final_train_loss']:.3f}" if r["final_train_loss"] is not None else "-"
        train_time = f"{r['train_seconds']:.0f} s" if r["train_seconds"] is not None else "-"
        lines.append(f"| {r['member']} | {r['num_experts']} | {r['top_k']} | {r['total_params']:,} | "
                     f"{r['active_params']:,} | {loss} | {100 * r['greedy_accuracy']:.1f}% | "
                     f"{100 * r['pass_at_1']:.1f}% | {100 * r['pass_at_8']:.1f}% | "
                     f"{100 * (r['pass_at_8'] - r['pass_at_1']):+.1f} pts | {train_time} |")
    return "\n".join(lines) + "\n"


def evaluate_family(model_dirs: list[Path], out_dir: str | Path, *, num_problems: int = 500, seed: int = 0,
                    num_samples: int = 8, temperature: float = 0.8, min_steps: int = 1, max_steps: int = 3,
                    max_operand: int = 30) -> list[dict]:
    """Evaluate every member on the same test problems; write `toy_eval.md` and `toy_eval.csv` to `out_dir`."""
    from tasks.datasets import load_problems

    if not model_dirs:
        raise UserError("no toy members to evaluate: train them with `moelab toy train` or pass --models DIR")
    if num_samples < 8:
        raise UserError("--samples must be >= 8 (the table reports pass@8)")
    problems = load_problems("toy", "test", num_problems=num_problems, seed=seed, min_steps=min_steps,
                             max_steps=max_steps, max_operand=max_operand)
    rows = []
    for model_dir in model_dirs:
        row = evaluate_member(model_dir, problems, num_samples=num_samples, temperature=temperature, seed=seed)
        print(f"{row['member']}: greedy {row['greedy_accuracy']:.3f}, pass@1 {row['pass_at_1']:.3f}, "
              f"pass@8 {row['pass_at_8']:.3f} ({row['eval_seconds']:.0f} s)", flush=True)
        rows.append(row)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toy_eval.md").write_text(markdown_table(rows))
    with (out / "toy_eval.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows
