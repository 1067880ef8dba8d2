"""The lab's GRPOTrainer: TRL's, plus what a sparse-MoE Mixtral needs.

What differs from `trl.GRPOTrainer`, and why:
- a non-finite micro-batch loss is reported to `rl.callbacks.NonFiniteLossGuard`, which stops the run
  before the bad step is saved;
- the colocated vLLM engine is built in the policy's dtype and, on CPU, in eager mode (TRL passes
  neither, see `colocated_engine_options`);
- vLLM is kept in sync with the policy by `rl.weight_sync` (TRL's own sync fails for Mixtral under
  transformers 5, see that module);
- with vLLM, TRL runs a no-grad forward pass of the policy over every rollout ("old" logprobs) for its
  importance-sampling correction even when the rollouts are on-policy, where those logprobs are the
  loss pass's own: there the correction is computed from the loss pass instead (same ratio, same
  `sampling/*` metrics) and the extra pass is skipped (`reuse_loss_logps`, `bench/grpo.py`);
- the colocated engine does not detokenize (`SamplingParams(detokenize=False)`): TRL decodes the
  completions from their token ids itself, and reads only the numbers of vLLM's logprobs;
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
import math
import os
from typing import Any, Iterator

import torch
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback
from trl import GRPOTrainer

from rl.callbacks import ProgressLogCallback
from rl.weight_sync import MixtralWeightSync

SEQUENCE_LEVEL_SAMPLING = ("sequence_mask", "sequence_truncate")


def vllm_importance_sampling_ratio(logps: torch.Tensor, sampling_logps: torch.Tensor, mask: torch.Tensor, mode: str,
                                   clip_min: float | None, clip_max: float | None) -> torch.Tensor:
    """TRL 1.16's vLLM importance-sampling ratio (`GRPOTrainer._generate_and_score_completions`): the
    policy's logprobs over the ones vLLM sampled with, per token (B, T) or per sequence (B, 1), truncated
    or masked outside [clip_min, clip_max]; tokens vLLM could not score (NaN) count as ratio 1."""
    diff = torch.nan_to_num((logps - sampling_logps) * mask, nan=0.0)
    ratio = torch.exp(diff.sum(dim=-1, keepdim=True) if mode in SEQUENCE_LEVEL_SAMPLING else diff)
    if mode in ("sequence_truncate", "token_truncate"):
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    if mode in ("sequence_mask", "token_mask"):
        low = clip_min if clip_min is not None else -math.inf
        high = clip_max if clip_max is not None else math.inf
        return ratio.masked_fill((ratio < low) | (ratio > high), value=0.0)
    raise ValueError(f"Unknown vLLM importance sampling level: {mode}. Possible values are 'token_truncate', "
                     "'token_mask', 'sequence_truncate', and 'sequence_mask'.")


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
    show what an engine that never syncs samples from). `reuse_loss_logps=False` keeps TRL's extra
    old-logprob pass for on-policy vLLM rollouts (tests compare the two)."""

    def __init__(self, *args: Any, nonfinite_guard: Any = None, sync_vllm_weights: bool = True,
                 reuse_loss_logps: bool = True, **kwargs: Any):
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
        self.reuse_loss_logps = reuse_loss_logps
        self._awaiting_sampling_ratio: dict | None = None
        if self.use_vllm:
            self.vllm_generation.sync_weights = MixtralWeightSync(self.vllm_generation) if sync_vllm_weights \
                else (lambda: None)
            engine_kwargs = self.vllm_generation.generation_kwargs
            if self.vllm_mode == "colocate" and "stop" not in engine_kwargs:  # stop strings need the text
                # TRL reads token ids and logprobs from the engine and decodes completions itself; left on,
                # vLLM's output processor would also detokenize every sampled and logprob token
                self.vllm_generation.generation_kwargs = {"detokenize": False, **engine_kwargs}
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

    # -------------------------------------------------------- vLLM importance sampling from the loss pass
    def _loss_pass_gives_old_logps(self) -> bool:
        """True where TRL computes old logprobs only for vLLM's importance-sampling correction: rollouts
        are generated at an optimizer-step boundary and used up before the next update (TRL's own test,
        `gradient_accumulation_steps % (steps_per_generation * num_iterations) == 0`), so the policy the
        loss pass runs is the one that scored them: its logprobs are the old ones."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        return (self.reuse_loss_logps and self.use_vllm and self.vllm_importance_sampling_correction
                and self.args.gradient_accumulation_steps % generate_every == 0)

    def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
        if not self._loss_pass_gives_old_logps():
            return super()._generate_and_score_completions(inputs)
        # TRL then neither runs its old-logprob pass nor computes the ratio; `sampling_per_token_logps`
        # (vLLM's) still comes back, and `_compute_loss` computes the ratio from the loss pass.
        self.vllm_importance_sampling_correction = False
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self.vllm_importance_sampling_correction = True

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        if (self._loss_pass_gives_old_logps() and "importance_sampling_ratio" not in inputs
                and inputs.get("sampling_per_token_logps") is not None):
            inputs = dict(inputs)  # the buffered batch stays as TRL made it
            self._awaiting_sampling_ratio = inputs
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._awaiting_sampling_ratio = None

    def _get_per_token_logps_and_entropies(self, model: Any, *args: Any, **kwargs: Any) -> Any:
        result = super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
        inputs, self._awaiting_sampling_ratio = self._awaiting_sampling_ratio, None
        if inputs is not None:  # the loss pass of `_compute_loss`: its first call, before TRL reads the ratio
            inputs["importance_sampling_ratio"] = self._sampling_ratio(result[0].detach(), inputs)
        return result

    def _sampling_ratio(self, logps: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """The importance-sampling ratio and TRL's `sampling/*` metrics, from the loss pass's logprobs."""
        from trl.trainer.utils import nanmax, nanmin

        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        sampling = inputs["sampling_per_token_logps"]
        mode_is = self.vllm_importance_sampling_mode
        ratio = vllm_importance_sampling_ratio(logps, sampling, mask, mode_is, self.vllm_importance_sampling_clip_min,
                                               self.vllm_importance_sampling_clip_max)
        device, metrics = logps.device, self._metrics["train" if self.model.training else "eval"]
        token_mask = mask.bool()
        delta = torch.abs(logps - sampling)
        delta = delta[token_mask & ~torch.isnan(delta)]
        zero = torch.tensor(0.0, device=device)
        metrics["sampling/sampling_logp_difference/mean"].append(
            self.accelerator.gather(delta.mean() if delta.numel() else zero).mean().item())
        metrics["sampling/sampling_logp_difference/max"].append(
            self.accelerator.gather(delta.max() if delta.numel() else zero).max().item())
        flat = ratio.flatten() if mode_is in SEQUENCE_LEVEL_SAMPLING else ratio[token_mask]
        metrics["sampling/importance_sampling_ratio/min"].append(
            nanmin(self.accelerator.gather(flat.min() if flat.numel() else zero)).item())
        metrics["sampling/importance_sampling_ratio/mean"].append(
            self.accelerator.gather(flat.mean() if flat.numel() else zero).nanmean().item())
        metrics["sampling/importance_sampling_ratio/max"].append(
            nanmax(self.accelerator.gather(flat.max() if flat.numel() else zero)).item())
        return ratio
