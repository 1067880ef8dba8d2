"""Every weight-sync path loads exactly the same weights into a colocated vLLM engine as the lab's first one.

`rl.weight_sync.sync_weights_into_engine` has three ways to move the experts (`per-expert`: the first
sync, 3E tensors per layer; `stacked`: transformers' two fused tensors per layer through vLLM's
`load_weights`; `packed`: vLLM-CPU's packing straight into the engine's tensors). On a tiny Mixtral the
engine's tensors and its logprobs of a fixed text must be bitwise the same after each, from the same
policy weights, with a sync from other weights in between (so a path that skipped a tensor would show).
"""

from __future__ import annotations

import pytest
import torch

FIXED_TEXT = "Question: Mia has 12 apples. She buys 5 more. How many apples now?\nAnswer: 12 + 5 = 17.\n#### 17"


def test_stacked_names_are_vllm_fused_checkpoint_names():
    from rl.weight_sync import hf_to_vllm_weights

    gate_up, down, router = torch.zeros(4, 6, 3), torch.zeros(4, 3, 3), torch.zeros(4, 3)
    named = [("model.layers.1.mlp.experts.gate_up_proj", gate_up), ("model.layers.1.mlp.experts.down_proj", down),
             ("model.layers.1.mlp.gate.weight", router)]
    out = dict(hf_to_vllm_weights(named, experts="stacked"))
    assert list(out) == ["model.layers.1.block_sparse_moe.experts.w13", "model.layers.1.block_sparse_moe.experts.w2",
                         "model.layers.1.block_sparse_moe.gate.weight"]
    assert out["model.layers.1.block_sparse_moe.experts.w13"] is gate_up  # no per-expert views, no copies
    assert len(list(hf_to_vllm_weights(named))) == 4 * 3 + 1  # per-expert: 3 tensors per expert
    with pytest.raises(ValueError):
        list(hf_to_vllm_weights(named, experts="fused"))


def test_cpu_packer_only_for_vllm_cpu_unquantized_experts():
    from rl.weight_sync import cpu_expert_packer

    class Layer(torch.nn.Module):  # a GPU or quantized layer: no CPU experts kernel behind it
        quant_method = None

    assert cpu_expert_packer(Layer()) is None


@pytest.mark.slow
@pytest.mark.vllm_engine
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # x86: two CPU expert kernels ("vec", "amx")
def test_every_path_loads_the_same_weights(tmp_path, dtype):
    import os

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from tiny_mixtral import tiny_mixtral
    from transformers import AutoTokenizer, MixtralForCausalLM
    from vllm import LLM, SamplingParams

    from rl.weight_sync import sync_weights_into_engine, vllm_model

    folder = tiny_mixtral(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(FIXED_TEXT, add_special_tokens=False)["input_ids"]
    policy = MixtralForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    llm = LLM(model=folder, dtype=dtype, enforce_eager=True, max_model_len=256, seed=0)
    engine = vllm_model(llm)
    generator = torch.Generator().manual_seed(0)
    weights = []  # two policies, both away from the checkpoint the engine started from
    for scale in (0.02, 0.05):
        weights.append({n: p.detach() + scale * torch.randn(p.shape, generator=generator).to(p.dtype)
                        for n, p in policy.named_parameters()})

    def sync(which: int, path: str) -> str:
        with torch.no_grad():
            for name, param in policy.named_parameters():
                param.copy_(weights[which][name])
        return sync_weights_into_engine(llm, policy.named_parameters(), path=path)

    def state() -> dict[str, torch.Tensor]:
        return {n: t.detach().clone() for n, t in engine.state_dict().items()}

    def logprobs() -> list[float]:
        out = llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0),
                           use_tqdm=False)[0]
        return [out.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))]

    assert sync(0, "per-expert") == "per-expert"
    reference = [(state(), logprobs())]
    sync(1, "per-expert")
    reference.append((state(), logprobs()))
    experts = [n for n in reference[0][0] if n.endswith(("w13_weight", "w2_weight"))]
    assert len(experts) == 4 and all(not torch.equal(reference[0][0][n], reference[1][0][n]) for n in experts)
    assert reference[0][1] != reference[1][1]
    for which, path in [(0, "packed"), (1, "stacked"), (0, "auto"), (1, "packed"), (0, "stacked")]:
        taken = sync(which, path)
        assert taken == ("packed" if path == "auto" else path)
        expected_state, expected_logprobs = reference[which]
        got = state()
        assert got.keys() == expected_state.keys()
        differ = [n for n, t in got.items() if not torch.equal(t, expected_state[n])]
        assert not differ, f"{path}: engine tensors differ from the per-expert sync's: {differ}"
        assert logprobs() == expected_logprobs, f"{path}: engine logprobs differ from the per-expert sync's"


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_packed_sync_puts_no_expert_tensor_through_load_weights(tmp_path):
    import os

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from tiny_mixtral import tiny_mixtral
    from transformers import MixtralForCausalLM
    from vllm import LLM

    from rl.weight_sync import sync_weights_into_engine, vllm_model

    folder = tiny_mixtral(tmp_path / "tiny")
    policy = MixtralForCausalLM.from_pretrained(folder, dtype=torch.float32)
    llm = LLM(model=folder, dtype="float32", enforce_eager=True, max_model_len=256, seed=0)
    engine = vllm_model(llm)
    seen: dict[str, list[tuple[str, tuple]]] = {}
    load_weights = engine.load_weights

    for path in ("per-expert", "stacked", "packed"):
        names = seen.setdefault(path, [])

        def recording(weights, names=names):
            def each():
                for name, tensor in weights:
                    names.append((name, tuple(tensor.shape)))
                    yield name, tensor
            return load_weights(each())

        engine.load_weights = recording
        try:
            sync_weights_into_engine(llm, policy.named_parameters(), path=path)
        finally:
            engine.load_weights = load_weights
    experts = {path: [n for n in names if ".experts." in n[0]] for path, names in seen.items()}
    assert len(experts["per-expert"]) == 2 * 8 * 3  # 2 layers x 8 experts x w1/w3/w2
    assert experts["stacked"] == [(f"model.layers.{i}.block_sparse_moe.experts.{w}", shape) for i in range(2)
                                  for w, shape in (("w13", (8, 256, 64)), ("w2", (8, 64, 128)))]
    assert experts["packed"] == []
    others = {path: [n for n in names if ".experts." not in n[0]] for path, names in seen.items()}
    assert others["per-expert"] == others["stacked"] == others["packed"]
