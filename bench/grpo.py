"""GRPO step time, broken down: generation, reward, forward/backward, weight sync; HF vs colocated vLLM.

    python bench/grpo.py                       # toy recipe, toy-d64-E8-k2 (tiny random Mixtral if absent)
    python bench/grpo.py --steps 8 --model /path/to/mixtral

Both variants run the same recipe in the same process one after the other (same machine state), and
the script prints per-component medians over the steps after the first (warm-up); its last line is
`ratio: N`, the median step time with HF generate over that with colocated vLLM (above 1: vLLM is
faster). Components come from TRL's own profiling blocks: generation = `transformers.generate` or
`vLLM.generate`, reward = `_calculate_rewards`, sync = `sync_weights` (rl.weight_sync), fwd/bwd =
`step_time - _prepare_inputs` (the loss pass and optimizer step; `_prepare_inputs` holds generation,
rewards and the old-logprob pass).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

LAB = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LAB))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

COMPONENTS = {"generation": ("transformers.generate", "vLLM.generate"), "reward": ("_calculate_rewards",),
              "sync": ("sync_weights",), "prepare_inputs": ("_prepare_inputs",)}


def record_trl_profiling() -> dict[str, list[float]]:
    """Make TRL's profiling blocks append their durations here (they only report to trackers)."""
    from trl.extras import profiling

    timings: dict[str, list[float]] = collections.defaultdict(list)

    def log(self, duration: float) -> None:
        timings[self.name.split(".", 1)[-1]].append(duration)  # "<TrainerClass>.<block>" -> block

    profiling.ProfilingContext._log_metrics = log
    return timings


class StepTimer:
    """TrainerCallback: wall time of each optimizer step, and the profiling totals within it."""

    def __init__(self, timings: dict[str, list[float]]):
        self.timings, self.rows, self._start, self._marks = timings, [], 0.0, {}

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        self._marks = {name: len(values) for name, values in self.timings.items()}

    def on_step_end(self, args, state, control, **kwargs):
        row = {"step": time.perf_counter() - self._start}
        for component, names in COMPONENTS.items():
            row[component] = sum(sum(self.timings[n][self._marks.get(n, 0):]) for n in names if n in self.timings)
        row["fwd/bwd"] = row["step"] - row.pop("prepare_inputs")
        self.rows.append(row)


def run_variant(model: str, steps: int, use_vllm: bool, out: Path, timings) -> list[dict]:
    from core.config import load_config
    from rl.schema import GRPORecipe
    from rl.train import build_trainer

    overrides = [f"model.name={model}", f"output_dir={out}", f"max_steps={steps}", "eval.datasets=[]",
                 "checkpoints.register=false", f"checkpoints.save_steps={steps + 1}", "moe.log_expert_load_steps=0",
                 f"grpo.use_vllm={str(use_vllm).lower()}", "grpo.vllm_gpu_memory_utilization=0.3"]
    cfg = load_config(LAB / "configs" / "grpo" / "toy.yaml", overrides, schema=GRPORecipe)
    trainer, _ = build_trainer(cfg)
    timer = StepTimer(timings)
    trainer.add_callback(timer)
    trainer.train()
    return timer.rows[1:]  # the first step pays one-time costs (engine warm-up, allocator)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model name or dir (default: toy-d64-E8-k2, else tiny random)")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    timings = record_trl_profiling()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(Path(tmp))
        results = {}
        for label, use_vllm in (("hf", False), ("vllm", True)):
            results[label] = run_variant(model, args.steps, use_vllm, Path(tmp) / label, timings)
    keys = ["step", "generation", "reward", "fwd/bwd", "sync"]
    print(f"\nGRPO toy recipe, model {model}, median over {args.steps - 1} steps (seconds)")
    print(f"{'variant':8s}" + "".join(f"{k:>12s}" for k in keys))
    medians = {}
    for label, rows in results.items():
        medians[label] = {k: statistics.median(r[k] for r in rows) for k in keys}
        print(f"{label:8s}" + "".join(f"{medians[label][k]:12.3f}" for k in keys))
    print(f"generation ratio hf / vllm: {medians['hf']['generation'] / max(medians['vllm']['generation'], 1e-9):.2f}x")
    print(f"ratio: {medians['hf']['step'] / medians['vllm']['step']:.2f}  (step time, HF generate / colocated vLLM)")
    return 0


def default_model(tmp: Path) -> str:
    from checkpoints_index.index import resolve
    from core.errors import UserError

    try:
        return resolve("toy-d64-E8-k2").local_path or "toy-d64-E8-k2"
    except UserError:
        sys.path.insert(0, str(LAB / "tests"))  # the test fixture model
        from tiny_mixtral import tiny_mixtral

        return tiny_mixtral(tmp / "tiny")


if __name__ == "__main__":
    sys.exit(main())
