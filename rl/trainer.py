"""The lab's GRPOTrainer: TRL's, plus what a sparse-MoE Mixtral needs.

What differs from `trl.GRPOTrainer`, and why:
- a non-finite micro-batch loss is reported to `rl.callbacks.NonFiniteLossGuard`, which stops the run
  before the bad step is saved;
- the colocated vLLM engine is built in the policy's dtype and, on CPU, in eager mode (TRL passes
  neither, see `colocated_engine_options`);
- vLLM is kept in sync with the policy by `rl.weight_sync` (TRL's own sync fails for Mixtral under
  transformers 5, see that module);
- under DeepSpeed ZeRO-3 the sparse-MoE block is one leaf module (`register_zero3_leaf_modules`),
  set on the model before it is handed to the trainer;
- the lab's own scalars (greedy eval accuracy) reach the trackers in `report_to` through
  `log_scalars`, transformers' `Trainer.log` without TRL's override (which would fold in and clear
  the train metrics TRL is accumulating for the step's own log entry);
- without a terminal (`disable_tqdm`) transformers' PrinterCallback (a dict per step) gives way to
  `rl.callbacks.ProgressLogCallback` (one plain line with step, s/step and ETA);
- `grpo.project` names the wandb project too (TRL/transformers pass it to trackio only).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import os

import torch
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback
from trl import GRPOTrainer

from rl.callbacks import ProgressLogCallback
from rl.weight_sync import MixtralWeightSync


def register_zero3_leaf_modules(model: Any, args: Any) -> bool:
    """Under DeepSpeed ZeRO-3, make the sparse-MoE block one leaf: its parameters are gathered
    together on every rank, even when a rank's tokens route to none of an expert (else: hang)."""
    plugin = getattr(getattr(args, "distributed_state", None), "deepspeed_plugin", None)
    if plugin is None or getattr(plugin, "zero_stage", None) != 3:
        return False
    from deepspeed.utils import set_z3_leaf_modules

    classes = sorted({type(m) for m in model.modules() if type(m).__name__.endswith("SparseMoeBlock")},
                     key=lambda c: c.__name__)
    if classes:
        set_z3_leaf_modules(model, classes)
    return bool(classes)


@contextlib.contextmanager
def colocated_engine_options(**options: Any) -> Iterator[None]:
    """Extra `vllm.LLM(...)` keyword arguments for the engine TRL builds in colocate mode.

    TRL passes no `dtype`, and vLLM's "auto" downcasts float32 checkpoints to bfloat16, so on CPU
    (where fp32 is the fast path) the engine would sample from a bf16-rounded policy; TRL passes no
    `enforce_eager` either, and graph capture on CPU only adds start-up time (rl/README.md, "vLLM
    weight sync").
    """
    from trl.generation import vllm_generation

    original = getattr(vllm_generation, "LLM", None)  # absent when vLLM is not installed
    if original is None:
        yield
        return

    def build(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, **options})

    vllm_generation.LLM = build
    try:
        yield
    finally:
        vllm_generation.LLM = original


class MoEGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that (a) reports non-finite losses to a guard callback, (b) keeps vLLM in sync with
    the policy for Mixtral (`rl.weight_sync`), (c) builds the colocated engine in the policy's dtype
    (eager mode on CPU).

    `sync_vllm_weights=False` leaves the engine on its start-up weights (tests and the bench use it to
    show what an engine that never syncs samples from)."""

    def __init__(self, *args: Any, nonfinite_guard: Any = None, sync_vllm_weights: bool = True, **kwargs: Any):
        model = kwargs.get("model", args[0] if args else None)
        options: dict[str, Any] = {}
        if hasattr(model, "dtype"):
            options["dtype"] = str(model.dtype).removeprefix("torch.")
        if not torch.cuda.is_available():
            options["enforce_eager"] = True
        grpo_args = kwargs.get("args")
        if getattr(grpo_args, "project", None) and "wandb" in (getattr(grpo_args, "report_to", None) or []):
            os.environ.setdefault("WANDB_PROJECT", grpo_args.project)
        colocated = getattr(grpo_args, "use_vllm", False) and getattr(grpo_args, "vllm_mode", None) == "colocate"
        # Only a colocated engine is built here; HF generation and server mode need no vLLM installed.
        with colocated_engine_options(**options) if colocated else contextlib.nullcontext():
            super().__init__(*args, **kwargs)
        self.nonfinite_guard = nonfinite_guard
        if self.use_vllm:
            self.vllm_generation.sync_weights = MixtralWeightSync(self.vllm_generation) if sync_vllm_weights \
                else (lambda: None)
        if self.args.disable_tqdm:
            self.remove_callback(PrinterCallback)
            self.add_callback(ProgressLogCallback())

    def log_scalars(self, logs: dict[str, float]) -> None:
        """Log the lab's own scalars now (log history + every tracker), leaving TRL's step metrics alone.

        Called from a callback's `on_step_end`, after transformers has decided to log this step: its
        `on_log` handler clears `control.should_log`, which would drop the step's own log entry, so the
        flag is put back."""
        should_log = self.control.should_log
        Trainer.log(self, dict(logs))
        self.control.should_log = should_log

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.nonfinite_guard is not None and not torch.isfinite(loss.detach()).all():
            self.nonfinite_guard.trip(self.state.global_step + 1, f"loss={float(loss.detach().float().mean())}")
        return loss
