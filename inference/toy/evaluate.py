"""Measure the toy family: the table in `checkpoints_index/toy/README.md`, reproduced by one command.

    moelab toy eval [--models DIR ...] [--num-problems 500] [--samples 8] [--temperature 0.8] [--out DIR]

Per member: total/active parameters, final train loss (both from the member's `training.json`, else
counted from its weights), greedy accuracy, and sampled pass@1 / pass@8 at T=0.8 on the toy test
split, with the unbiased estimator of Chen et al. 2021 (eq. 1) from n samples per problem; and
greedy accuracy on the memorization control's facts the member was trained on (`recipe.yaml`).

Everything is the lab's own, so the table measures what sweeps and GRPO measure: problems from
`tasks.datasets.load_problems("toy", ...)` (rows name their checker task); the study's zero-shot QA
prompt and stop strings (`tasks.prompts`); generation through `inference.generation.backends` (vLLM by
default, as the sweeps; `hf` for transformers), one seeded request per sample; verdicts from
`rewards.score_samples` with the rows' task; pass@k from `core.stats`. No extraction of its own: the
independent second opinion on the scorer is `rewards.audit`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.files import atomic_write_csv
from core.provenance import write_sidecar
from inference.generation.backends import GenerationRequest, SamplingSettings, make_backend
from tasks.prompts import STUDY_STOP_STRINGS, format_prompt
from tasks.toy import MAX_NEW_TOKENS

TABLE_COLUMNS = ["member", "num_experts", "top_k", "total_params", "active_params", "final_train_loss",
                 "greedy_accuracy", "pass_at_1", "pass_at_8", "memorization_accuracy", "num_problems", "num_facts",
                 "train_seconds", "eval_seconds"]


def generate(backend: Any, prompts: list[str], *, num_samples: int = 1, temperature: float = 0.0,
             seed: int = 0) -> list[list[str]]:
    """`num_samples` completions per prompt (greedy when temperature == 0), cut at the study's stop
    strings. Sample j of prompt i has seed `seed * 10**6 + i * num_samples + j`, so the samples of one
    prompt are consecutive seeds, which vLLM serves as one request with `n` = num_samples."""
    sampling = SamplingSettings(temperature=temperature, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS,
                                stop=tuple(STUDY_STOP_STRINGS))
    requests = [GenerationRequest(prompt=prompt, seed=seed * 10**6 + i * num_samples + j, sampling=sampling)
                for i, prompt in enumerate(prompts) for j in range(num_samples)]
    texts = [result.completion for result in backend.generate(requests)]
    return [texts[i:i + num_samples] for i in range(0, len(texts), num_samples)]


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


def member_params(model_dir: Path, config: dict, training: dict) -> tuple[int, int]:
    """(total, active) parameters: from `training.json` (`training`), else counted from the weights'
    shapes (active drops the (E - k) experts a token does not use, in every layer)."""
    if "total_params" in training and "active_params" in training:
        return int(training["total_params"]), int(training["active_params"])
    from safetensors import safe_open

    total = expert = 0
    for weights in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(weights), framework="numpy") as handle:
            for name in handle.keys():
                size = 1
                for dim in handle.get_slice(name).get_shape():
                    size *= dim
                total += size
                expert += size if ".experts." in name else 0
    unused = config["num_local_experts"] - config["num_experts_per_tok"]
    return total, total - expert // config["num_local_experts"] * unused


def member_facts(model_dir: Path) -> list[dict]:
    """The memorization control's facts the member was trained on (from its `recipe.yaml`; none without one)."""
    from omegaconf import OmegaConf

    from tasks.datasets import load_problems

    recipe_path = model_dir / "recipe.yaml"
    if not recipe_path.is_file():
        return []
    recipe = OmegaConf.load(recipe_path)
    num_facts = int(OmegaConf.select(recipe, "task.num_facts", default=0) or 0)
    if num_facts == 0:
        return []
    return load_problems("toy_facts", "train", num_problems=num_facts, seed=int(recipe.seed))


def evaluate_member(model_dir: str | Path, problems: list[dict], *, num_samples: int = 8,
                    temperature: float = 0.8, seed: int = 0, backend: str = "vllm") -> dict[str, Any]:
    """One row of the table for the member saved in `model_dir` (`problems`: rows of `load_problems`)."""
    from core.stats import pass_at_k

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: no config.json; pass a toy member directory")
    start = time.time()
    facts = member_facts(model_dir)
    engine = make_backend(backend, str(model_dir), dtype="float32")
    try:
        prompts = [format_prompt(p["question"]) for p in problems]
        greedy_correct = count_correct(problems, generate(engine, prompts))
        samples = generate(engine, prompts, num_samples=num_samples, temperature=temperature, seed=seed)
        facts_correct = count_correct(facts, generate(engine, [format_prompt(f["question"]) for f in facts])) \
            if facts else []
    finally:
        engine.close()
    pass_at = pass_at_k(num_samples, count_correct(problems, samples), [1, 8]).mean(axis=0)
    config = json.loads((model_dir / "config.json").read_text())
    training_file = model_dir / "training.json"
    training = json.loads(training_file.read_text()) if training_file.is_file() else {}
    total, active = member_params(model_dir, config, training)
    n = len(problems)
    return {"member": model_dir.name, "num_experts": config["num_local_experts"],
            "top_k": config["num_experts_per_tok"], "total_params": total, "active_params": active,
            "final_train_loss": training.get("final_train_loss"),
            "greedy_accuracy": sum(greedy_correct) / n, "pass_at_1": float(pass_at[0]), "pass_at_8": float(pass_at[1]),
            "memorization_accuracy": sum(facts_correct) / len(facts) if facts else None,
            "num_problems": n, "num_facts": len(facts), "train_seconds": training.get("train_seconds"),
            "eval_seconds": round(time.time() - start, 1)}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| member | E | k | total params | active params | train loss | greedy acc | pass@1 (T=0.8) "
             "| pass@8 (T=0.8) | pass@8 - pass@1 | memorization (greedy) | train wall time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loss = f"{r['final_train_loss']:.3f}" if r["final_train_loss"] is not None else "-"
        train_time = f"{r['train_seconds']:.0f} s" if r["train_seconds"] is not None else "-"
        memorized = f"{100 * r['memorization_accuracy']:.1f}%" if r.get("memorization_accuracy") is not None else "-"
        lines.append(f"| {r['member']} | {r['num_experts']} | {r['top_k']} | {r['total_params']:,} | "
                     f"{r['active_params']:,} | {loss} | {100 * r['greedy_accuracy']:.1f}% | "
                     f"{100 * r['pass_at_1']:.1f}% | {100 * r['pass_at_8']:.1f}% | "
                     f"{100 * (r['pass_at_8'] - r['pass_at_1']):+.1f} pts | {memorized} | {train_time} |")
    return "\n".join(lines) + "\n"


def evaluate_family(model_dirs: list[Path], out_dir: str | Path, *, num_problems: int = 500, seed: int = 0,
                    num_samples: int = 8, temperature: float = 0.8, min_steps: int = 1, max_steps: int = 3,
                    max_operand: int = 30, backend: str = "vllm") -> list[dict]:
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
        row = evaluate_member(model_dir, problems, num_samples=num_samples, temperature=temperature, seed=seed,
                              backend=backend)
        print(f"{row['member']}: greedy {row['greedy_accuracy']:.3f}, pass@1 {row['pass_at_1']:.3f}, "
              f"pass@8 {row['pass_at_8']:.3f} ({row['eval_seconds']:.0f} s)", flush=True)
        rows.append(row)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toy_eval.md").write_text(markdown_table(rows))
    atomic_write_csv(out / "toy_eval.csv", rows, TABLE_COLUMNS)
    write_sidecar(out / "toy_eval.csv")  # command, commit, date; each member's seconds are in the table
    return rows
