"""Trainer callbacks that make a GRPO run observable and safe: expert load, greedy eval, progress
lines, NaN guard, checkpoint registration.

Each is a plain `transformers.TrainerCallback`, so they compose with TRL's own logging and with any
tracker in `report_to`. Every callback works under DeepSpeed: all ranks run the forward passes
(ZeRO-3 needs every rank in every forward), only rank 0 writes files.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from inference.generation.greedy import greedy_completions  # chat-rendered prompts: BOS is in the text
from rl.moe_metrics import ExpertLoadMeter
from rl.report import SAMPLES_FILE  # the file rl.report reads: one name for writer and reader


class ExpertLoadCallback(TrainerCallback):
    """Every `every` steps: add `moe/*` scalars to the log entry, append per-expert fractions to
    `expert_load.jsonl`. Insert it *first* in the callback list so trackers and the console see the
    scalars too (transformers calls `on_log` in list order with the same `logs` dict)."""

    def __init__(self, model: Any, output_dir: str | Path, every: int):
        self.meter = ExpertLoadMeter(model)
        self.path = Path(output_dir) / "expert_load.jsonl"
        self.every = every
        self._last_logged = -1

    def on_log(self, args, state, control, logs=None, **kwargs):
        step = state.global_step
        if logs is None or "loss" not in logs or step == self._last_logged or step % self.every != 0:
            return
        scalars, fractions = self.meter.collect()
        if not scalars:
            return
        self._last_logged = step
        logs.update(scalars)
        if state.log_history and state.log_history[-1].get("step") == step:
            state.log_history[-1].update(scalars)
        if state.is_world_process_zero:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, "fractions": fractions}) + "\n")


class GreedyEvalCallback(TrainerCallback):
    """Greedy accuracy on fixed eval subsets before training, every `every` steps and at the end,
    appended to `eval.csv` (`step,dataset,accuracy,num_problems`) and logged as `eval_<set>/accuracy`
    through `log` (the trainer's `log_scalars`: log history and every tracker in `report_to`, where
    transformers shows it as `eval/<set>/accuracy`); every completion and its verdict go to
    `eval_samples.jsonl` (for paired before/after statistics). The final eval runs at the last step's
    end, not at `on_train_end`, because trackers (trackio, tensorboard) close at `on_train_end`; it
    runs there only when training stopped early.

    `eval_sets` maps a dataset name to {prompts (rendered), ids, columns (reward kwargs), wrap};
    `score` is a TRL-style reward callable (1.0 = correct), so evaluation and training agree on what
    counts as correct.
    """

    def __init__(self, tokenizer: Any, eval_sets: dict[str, dict], score: Callable, output_dir: str | Path,
                 every: int, max_new_tokens: int, batch_size: int, synced_gpus: bool = False,
                 log: Callable[[dict], None] | None = None):
        self.tokenizer = tokenizer
        self.log = log
        self.eval_sets = eval_sets
        self.score = score
        self.path = Path(output_dir) / "eval.csv"
        self.samples_path = Path(output_dir) / SAMPLES_FILE
        self.every = every
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.synced_gpus = synced_gpus
        self.done_steps = self._steps_already_written()

    def _steps_already_written(self) -> set[int]:
        if not self.path.is_file():
            return set()
        with self.path.open() as f:
            return {int(row["step"]) for row in csv.DictReader(f)}

    def evaluate(self, model: Any, step: int, state: Any = None) -> dict[str, float]:
        results = {}
        for name, data in self.eval_sets.items():
            texts = greedy_completions(model, self.tokenizer, data["prompts"], max_new_tokens=self.max_new_tokens,
                                       batch_size=self.batch_size, add_special_tokens=False,
                                       synced_gpus=self.synced_gpus)
            completions = [data["wrap"](t) for t in texts]
            rewards = self.score(prompts=data["prompts"], completions=completions, **data["columns"])
            correct = [r is not None and r > 0.5 for r in rewards]
            results[name] = sum(correct) / len(correct)
            if state is None or state.is_world_process_zero:
                self._append(step, name, results[name], len(correct))
                with self.samples_path.open("a") as f:  # per problem: paired comparisons across steps
                    for pid, text, ok in zip(data["ids"], texts, correct):
                        f.write(json.dumps({"step": step, "dataset": name, "id": pid, "correct": ok,
                                            "completion": text}) + "\n")
        if state is not None:
            entry = {f"eval_{name}/accuracy": acc for name, acc in results.items()}
            if self.log is not None:
                self.log(entry)
            else:
                state.log_history.append({**entry, "step": step})
            if state.is_world_process_zero:
                print(f"[eval] step {step}: " + ", ".join(f"{k}={v:.3f}" for k, v in entry.items()), flush=True)
        self.done_steps.add(step)
        return results

    def _append(self, step: int, dataset: str, accuracy: float, num_problems: int) -> None:
        new = not self.path.is_file()
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "dataset", "accuracy", "num_problems"])
            writer.writerow([step, dataset, f"{accuracy:.6f}", num_problems])

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step not in self.done_steps:
            self.evaluate(model, state.global_step, state)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        due = self.every and state.global_step % self.every == 0
        last = state.max_steps and state.global_step >= state.max_steps
        if (due or last) and state.global_step not in self.done_steps:
            self.evaluate(model, state.global_step, state)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.global_step not in self.done_steps:
            self.evaluate(model, state.global_step, state)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ProgressLogCallback(TrainerCallback):
    """One plain line per log entry for logs and batch jobs (no terminal, so no tqdm bar), in place of
    transformers' PrinterCallback and its raw dicts: step/total, seconds per step since training
    (re)started, ETA, and the headline metrics (TRL's names, the lab's eval accuracy)."""

    SHOWN = ("loss", "reward", "reward_std", "kl", "entropy", "grad_norm", "learning_rate")

    def __init__(self):
        self.start: float | None = None
        self.first_step = 0

    def on_step_begin(self, args, state, control, **kwargs):
        if self.start is None:
            self.start, self.first_step = time.monotonic(), state.global_step

    def line(self, state: Any, logs: dict) -> str:
        parts = [f"step {state.global_step}/{state.max_steps}"]
        done = state.global_step - self.first_step
        if self.start is not None and done > 0:
            per_step = (time.monotonic() - self.start) / done
            remaining = per_step * (state.max_steps - state.global_step)
            parts += [f"{per_step:.2f} s/step", f"ETA {format_duration(remaining)}"]
        shown = [k for k in self.SHOWN if k in logs] + sorted(k for k in logs if k.endswith("/accuracy"))
        parts += [f"{k} {logs[k]:.4g}" for k in shown if isinstance(logs[k], (int, float))]
        return "[grpo] " + ", ".join(parts)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs:
            print(self.line(state, logs), flush=True)


class NonFiniteLossGuard(TrainerCallback):
    """Stops training at the first step whose loss or gradient norm is NaN/inf, *without* saving it,
    so the newest checkpoint on disk is the last good one. The trainer (rl.trainer.MoEGRPOTrainer)
    checks each micro-batch loss and calls `trip`; logged values are checked here too."""

    def __init__(self):
        self.bad_step: int | None = None
        self.what = ""

    def trip(self, step: int, what: str) -> None:
        if self.bad_step is None:
            self.bad_step, self.what = step, what

    def _stop(self, control):
        control.should_save = False
        control.should_evaluate = False
        control.should_training_stop = True
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.bad_step is not None:
            return self._stop(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                self.trip(state.global_step, f"{key}={value}")
        if self.bad_step is not None:
            return self._stop(control)


class RegisterCheckpointCallback(TrainerCallback):
    """Registers each saved `checkpoint-N` in the checkpoint index as `<prefix>-step<N>`."""

    def __init__(self, prefix: str, base_model: str):
        self.prefix = prefix
        self.base_model = base_model

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from checkpoints_index.index import register_checkpoint

        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if (path / "config.json").is_file():
            register_checkpoint(f"{self.prefix}-step{state.global_step}", path, base_model=self.base_model,
                                step=state.global_step)
