"""Colocated vLLM samples from the *current* policy: train one GRPO step, sync, compare logprobs.

The check that matters is end to end: the engine's logprob of a fixed completion must equal the
trained policy's after the sync (fp32, same weights: ~1e-6), and must NOT when the sync is skipped
(the training step moved the policy by far more than that), so the test fails if the sync breaks.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.vllm_engine]

FIXED_PROMPT = "Question: Mia has 12 apples. She buys 5 more apples. How many apples does Mia have now?\nAnswer:"
FIXED_COMPLETION = " Mia starts with 12 apples. She buys 5: 12 + 5 = 17.\n#### 17"


def digit_reward(prompts, completions, **kwargs):
    """Dense, learnable reward: share of digits in the completion (any signal moves the policy)."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


def train_one_step(model_dir: str, out_dir, sync: bool):
    from datasets import Dataset
    from transformers import AutoTokenizer, MixtralForCausalLM
    from trl import GRPOConfig

    from rl.trainer import MoEGRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = MixtralForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = GRPOConfig(output_dir=str(out_dir), max_steps=1, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=16, learning_rate=5e-2, beta=0.0, loss_type="grpo", use_vllm=True,
                      vllm_mode="colocate", vllm_gpu_memory_utilization=0.3, vllm_max_model_length=256,
                      report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, bf16=False)
    dataset = Dataset.from_list([{"prompt": FIXED_PROMPT}] * 16)
    trainer = MoEGRPOTrainer(model=model, reward_funcs=[digit_reward], args=args, train_dataset=dataset,
                             processing_class=tokenizer, sync_vllm_weights=sync)
    trainer.train()
    trainer.vllm_generation.sync_weights()  # what TRL calls before the next generation
    return trainer, tokenizer


def logprob_gap(trainer, tokenizer) -> float:
    from vllm import SamplingParams

    prompt_ids = tokenizer(FIXED_PROMPT, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(FIXED_COMPLETION, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + completion_ids
    out = trainer.vllm_generation.llm.generate([{"prompt_token_ids": ids}],
                                               SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)[0]
    engine = torch.tensor([out.prompt_logprobs[i][ids[i]].logprob for i in range(len(prompt_ids), len(ids))])
    model = trainer.model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, len(prompt_ids) - 1:-1].float()
    policy = torch.log_softmax(logits, -1).gather(1, torch.tensor(completion_ids)[:, None])[:, 0]
    return float((engine - policy).abs().max())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tiny_mixtral import tiny_mixtral

    return tiny_mixtral(tmp_path_factory.mktemp("tiny_mixtral"))


def test_hf_names_translate_to_vllm_checkpoint_names():
    from rl.weight_sync import hf_to_vllm_weights

    gate_up = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)  # E=2, 2F=6, D=3
    down = torch.zeros(2, 3, 3)
    router = torch.zeros(2, 3)
    out = dict(hf_to_vllm_weights([("model.layers.0.mlp.experts.gate_up_proj", gate_up),
                                   ("model.layers.0.mlp.experts.down_proj", down),
                                   ("model.layers.0.mlp.gate.weight", router)]))
    assert torch.equal(out["model.layers.0.block_sparse_moe.experts.1.w1.weight"], gate_up[1, :3])
    assert torch.equal(out["model.layers.0.block_sparse_moe.experts.1.w3.weight"], gate_up[1, 3:])
    assert out["model.layers.0.block_sparse_moe.experts.0.w2.weight"].shape == (3, 3)
    assert "model.layers.0.block_sparse_moe.gate.weight" in out


def test_engine_follows_policy_after_a_step_only_with_sync(model_dir, tmp_path):
    trainer, tokenizer = train_one_step(model_dir, tmp_path / "synced", sync=True)
    synced_gap = logprob_gap(trainer, tokenizer)
    del trainer
    trainer, tokenizer = train_one_step(model_dir, tmp_path / "stale", sync=False)
    stale_gap = logprob_gap(trainer, tokenizer)
    print(f"max |logp engine - logp policy|: synced {synced_gap:.2e}, unsynced {stale_gap:.2e}")
    assert synced_gap < 1e-3, f"engine and policy disagree after sync: max |dlogp| = {synced_gap}"
    assert stale_gap > 20 * max(synced_gap, 1e-4), f"unsynced engine should lag the policy: {stale_gap}"
