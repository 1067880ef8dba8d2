"""GRPO step time, itemized: every component of an optimizer step, HF generate vs colocated vLLM.

    python bench/grpo.py                                   # toy and d512 models, 3 timed steps each
    python bench/grpo.py --models toy --steps 5
    python bench/grpo.py --series idle-2026-12-09 --out docs/results/bench-grpo.jsonl

Models: `toy` is the toy recipe (`configs/grpo/toy.yaml`: 16 prompts x 8 completions, up to 128 tokens)
on toy-d64-E8-k2 (a tiny random Mixtral when the toy family is absent); `d512` is the same recipe on a
2-layer random-init stand-in of d512-E8-k2 (vocabulary 99,584, 129M parameters: `moelab.rehearse_standins`,
cached under `outputs/rehearse/models/`; its byte-level tokenizer spells a toy prompt in ~90-160 tokens),
with a batch a 2-core CPU can step (4 prompts x 4 completions of <= 16 tokens, prompts <= 96 tokens).
The variants of a model run the same recipe one after the other, each in a process of its own (its
peak RSS is its own; vLLM's in-process engine takes over the process's thread settings); the first
step of each pays one-time costs and is not timed.

A step is the wall time from one optimizer step's end to the next's (so the data fetch and the logging
between steps are inside it), and is split into what it is made of, timed where it happens:
data (`get_batch_samples`), generation (`transformers.generate` / `vLLM.generate`, TRL's own blocks),
weight sync (`sync_weights`: `rl.weight_sync`), reward (`_calculate_rewards`), old-logprob pass (the
policy's no-grad forward over the rollouts, which TRL runs for vLLM's importance-sampling correction),
ref-logprob pass (the reference model's, for the KL term), loss forward (`compute_loss`), backward,
grad clip, optimizer step, and log (`_maybe_log_save_evaluate`); `other` is the step minus all of
those: what the itemization does not name (tokenizing, decoding, padding, metric bookkeeping).
Per component: the median seconds over the timed steps and the median of its share of each step (on
busy cores a step slowed by another job shifts the medians of the seconds apart, not the shares). The
engine's share is generation + weight sync; the optimizer's is grad clip + optimizer step.

`--variants hf,vllm,vllm-before` adds the colocated trainer as it was before issue 28 (TRL's old-logprob
pass, the per-expert weight sync, an engine that detokenizes), to show in one run what was removed.

Last line: `ratio: N`, the smallest over the models of (median step with HF generate) / (median step
with colocated vLLM): at least 1 means colocated vLLM is no slower on any model. `--out` appends one
JSON line per model (figures, settings, provenance, `--series`) and writes the printed tables, with a
provenance line, to the same path with `.txt` for `.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LAB = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LAB))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

COMPONENTS = ["data", "generation", "weight sync", "reward", "old-logprob pass", "ref-logprob pass", "loss forward",
              "backward", "grad clip", "optimizer step", "log"]
TRL_BLOCKS = {"transformers.generate": "generation", "vLLM.generate": "generation", "sync_weights": "weight sync",
              "_calculate_rewards": "reward"}
COMMON = ["eval.datasets=[]", "checkpoints.register=false", "moe.log_expert_load_steps=0",
          "grpo.vllm_gpu_memory_utilization=0.3"]
# model label -> (what it is, recipe overrides besides the model): the batch of the d512 stand-in is cut
# so that a 2-core CPU steps it in tens of seconds (its 99,584-token vocabulary makes a logit row 0.4 MB)
MODELS = {
    "toy": ("toy recipe, 16 prompts x 8 completions, <= 128 tokens", []),
    "d512": ("toy recipe, 4 prompts x 4 completions, <= 16 tokens, prompts <= 96 tokens",
             ["grpo.per_device_train_batch_size=16", "grpo.num_generations=4", "grpo.max_completion_length=16",
              "data.max_prompt_length=96"]),
}


class Breakdown:
    """Records (component, start, end) wherever a component runs, and cuts them into optimizer steps."""

    def __init__(self):
        self.events: list[tuple[str, float, float]] = []
        self.step_ends: list[float] = []

    def add(self, name: str, start: float, end: float) -> None:
        self.events.append((name, start, end))

    def timed(self, name: str, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, start, time.perf_counter())
        return wrapper

    def rows(self) -> list[dict[str, float]]:
        """One row per step after the first: its wall time and each component's seconds within it."""
        rows = []
        for begin, end in zip(self.step_ends, self.step_ends[1:]):
            row = {"step": end - begin, **{c: 0.0 for c in COMPONENTS}}
            for name, start, stop in self.events:
                if begin <= start < end:
                    row[name] += stop - start
            row["other"] = row["step"] - sum(row[c] for c in COMPONENTS)
            rows.append(row)
        return rows


def instrument(trainer: Any, breakdown: Breakdown) -> None:
    """Time every component of `trainer`'s optimizer step into `breakdown` (instance attributes only)."""
    from transformers import TrainerCallback
    from trl.extras import profiling

    def log_trl_block(self, duration: float) -> None:  # TRL's blocks report to trackers only
        name = TRL_BLOCKS.get(self.name.split(".", 1)[-1])
        if name:
            end = time.perf_counter()
            breakdown.add(name, end - duration, end)

    profiling.ProfilingContext._log_metrics = log_trl_block
    in_loss = [False]
    logps = trainer._get_per_token_logps_and_entropies

    def per_token_logps(model, *args, **kwargs):
        if in_loss[0]:  # the loss forward's own pass: counted in "loss forward"
            return logps(model, *args, **kwargs)
        name = "ref-logprob pass" if model is getattr(trainer, "ref_model", None) else "old-logprob pass"
        return breakdown.timed(name, logps)(model, *args, **kwargs)

    compute_loss = breakdown.timed("loss forward", trainer.compute_loss)

    def loss(*args, **kwargs):
        in_loss[0] = True
        try:
            return compute_loss(*args, **kwargs)
        finally:
            in_loss[0] = False

    trainer._get_per_token_logps_and_entropies = per_token_logps
    trainer.compute_loss = loss
    trainer.get_batch_samples = breakdown.timed("data", trainer.get_batch_samples)
    trainer.accelerator.backward = breakdown.timed("backward", trainer.accelerator.backward)
    trainer._clip_grad_norm = breakdown.timed("grad clip", trainer._clip_grad_norm)
    trainer._maybe_log_save_evaluate = breakdown.timed("log", trainer._maybe_log_save_evaluate)

    class StepMarks(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kwargs):
            breakdown.add("optimizer step", self.start, time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            breakdown.step_ends.append(time.perf_counter())

    trainer.add_callback(StepMarks())


def run_variant(model: str, overrides: list[str], steps: int, variant: str, out: Path) -> list[dict]:
    from core.config import load_config
    from rl.schema import GRPORecipe
    from rl.train import build_trainer

    use_vllm = variant.startswith("vllm")
    overrides = [f"model.name={model}", f"output_dir={out}", f"max_steps={steps + 1}",
                 f"checkpoints.save_steps={steps + 2}", f"grpo.use_vllm={str(use_vllm).lower()}", *COMMON, *overrides]
    cfg = load_config(LAB / "configs" / "grpo" / "toy.yaml", overrides, schema=GRPORecipe)
    from core.platform import kept_heap

    # from the trainer's build to the end of its loop, as `rl.train.train`; vllm-before: glibc's heap, as before
    with kept_heap(enabled=variant != "vllm-before"):
        trainer, _ = build_trainer(cfg)
        if variant == "vllm-before":  # the trainer before issue 28: what it removed put back
            trainer.reuse_loss_logps = False  # TRL's extra old-logprob pass
            trainer.vllm_generation.sync_weights.path = "per-expert"  # the first weight sync
            trainer.vllm_generation.generation_kwargs.pop("detokenize", None)  # the engine detokenizes
        breakdown = Breakdown()
        instrument(trainer, breakdown)
        trainer.train()
    return breakdown.rows()  # the first step (engine warm-up, allocator) closes before the first row opens


def run_in_process(label: str, model: str, steps: int, variant: str) -> dict[str, Any]:
    """One variant in a fresh process (`--worker`): its step rows and its peak RSS."""
    command = [sys.executable, __file__, "--worker", f"{label}:{variant}", "--model-path", model,
               "--steps", str(steps)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    records = [line for line in done.stdout.splitlines() if line.startswith("RECORD ")]
    if done.returncode != 0 or not records:
        raise SystemExit(f"{label} {variant}: the worker failed (exit {done.returncode})")
    return json.loads(records[-1].removeprefix("RECORD "))


def model_path(label: str, tmp: Path) -> str:
    if label == "d512":
        from moelab.rehearse_standins import standin_model

        return str(standin_model("d512-E8-k2", 2, LAB / "outputs" / "rehearse" / "models"))
    if label != "toy":
        return label
    from checkpoints_index.index import resolve
    from core.errors import UserError

    try:
        return resolve("toy-d64-E8-k2").local_path or "toy-d64-E8-k2"
    except UserError:
        sys.path.insert(0, str(LAB / "tests"))  # the test fixture model
        from tiny_mixtral import tiny_mixtral

        return tiny_mixtral(tmp / "tiny")


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Per component: the median seconds over the timed steps, and the median of its per-step share of
    the step (robust to a step slowed by other jobs; the shares of one step add up to 100%)."""
    keys = ["step", *COMPONENTS, "other"]
    groups = {**{k: [k] for k in keys[1:]}, "engine": ["generation", "weight sync"],
              "optimizer": ["grad clip", "optimizer step"]}
    return {"median_s": {k: round(statistics.median(r[k] for r in rows), 4) for k in keys},
            "share": {g: round(statistics.median(sum(r[k] for k in ks) / r["step"] for r in rows), 4)
                      for g, ks in groups.items()},
            "steps": [{k: round(r[k], 4) for k in keys} for r in rows]}


def table(label: str, what: str, model: str, results: dict[str, dict]) -> list[str]:
    steps = len(next(iter(results.values()))["steps"])
    lines = [f"GRPO {label}: {model} ({what})",
             f"median over {steps} steps after the first: seconds (median per-step share of the step)"]
    lines.append(f"{'component':18s}" + "".join(f"{v:>20s}" for v in results))
    for key in ["step", *COMPONENTS, "other"]:
        cells = [f"{res['median_s'][key]:9.3f}" + ("" if key == "step" else f" ({100 * res['share'][key]:5.1f}%)")
                 for res in results.values()]
        lines.append(f"{key:18s}" + "".join(f"{c:>20s}" for c in cells))
    for share, name in (("engine", "engine share (generation + weight sync)"),
                        ("optimizer", "optimizer share (grad clip + optimizer step)")):
        lines.append(f"{name}: " + ", ".join(f"{v} {100 * r['share'][share]:.1f}%" for v, r in results.items()))
    hf, vllm = results["hf"]["median_s"]["step"], results["vllm"]["median_s"]["step"]
    lines.append(f"ratio {label}: {hf / vllm:.2f}  (median step, HF generate / colocated vLLM)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="toy,d512", help="comma list of toy, d512 or model dirs (default: both)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (one more runs first, untimed)")
    parser.add_argument("--variants", default="hf,vllm", help="hf (transformers generate), vllm (colocated), "
                        "vllm-before (colocated, as before issue 28: TRL's old-logprob pass, per-expert sync, "
                        "detokenizing engine)")
    parser.add_argument("--out", type=Path, help="append one JSON line per model; tables to the same name .txt")
    parser.add_argument("--series", default="issue-28", help="label of the runs this one belongs to (READMEs "
                        "select runs by it, e.g. busy-2026-12-08 or idle-2026-12-09)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        label, variant = args.worker.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_variant(args.model_path, MODELS.get(label, ("", []))[1], args.steps, variant,
                               Path(tmp) / variant)
        peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print("RECORD " + json.dumps({"rows": rows, "peak_rss_mib": peak}), flush=True)
        return 0
    from core.provenance import provenance, provenance_line

    record = provenance()
    load_at_start = round(os.getloadavg()[0], 2)
    lines, records, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.models.split(","):
            what, overrides = MODELS.get(label, ("toy recipe", []))
            model = model_path(label, Path(tmp))
            results = {}
            for variant in args.variants.split(","):
                done = run_in_process(label, model, args.steps, variant)
                results[variant] = {**summarize(done["rows"]), "peak_rss_mib": done["peak_rss_mib"]}
            block = table(label, what, model, results)
            print("\n" + "\n".join(block), flush=True)
            lines += ["", *block]
            ratio = results["hf"]["median_s"]["step"] / results["vllm"]["median_s"]["step"]
            ratios.append(ratio)
            records.append({"provenance": record, "series": args.series, "date": time.strftime("%Y-%m-%d"),
                            "load_1m_at_start": load_at_start, "model": label, "model_path": model,
                            "settings": {"recipe": "configs/grpo/toy.yaml", "overrides": COMMON + overrides,
                                         "steps_timed": args.steps},
                            "variants": results, "ratio": round(ratio, 3)})
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
        text = args.out.with_suffix(".txt") if args.out.suffix == ".jsonl" else Path(f"{args.out}.txt")
        text.write_text(provenance_line(record) + f" | series {args.series}\n" + "\n".join(lines).lstrip("\n") + "\n")
    print(f"ratio: {min(ratios):.2f}  (smallest over {args.models}: median step, HF generate / colocated vLLM)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
