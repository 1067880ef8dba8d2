"""On-policy vLLM rollouts: the importance-sampling ratio from the loss pass equals TRL's from its extra pass.

TRL 1.16 runs a no-grad forward pass of the policy over every vLLM rollout ("old" logprobs) for its
importance-sampling correction, even when nothing has updated the policy since the rollouts were
sampled, where those logprobs are what the loss pass computes anyway. `rl.trainer.MoEGRPOTrainer`
skips that pass there and computes the ratio in the loss pass. Here both run on the same rollouts of a
toy-family Mixtral whose engine lags the policy (so the ratios are far from 1 and some are clipped),
with completions of different lengths (so the padding mask matters): ratio, loss and gradients must
agree, for every importance-sampling mode TRL has.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.vllm_engine]

TOY = "checkpoints_index/toy/models/toy-d64-E8-k2"  # a trained member: its completions end at different lengths
MODES = ["sequence_mask", "sequence_truncate", "token_mask", "token_truncate"]


def digit_reward(prompts, completions, **kwargs):
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


def test_importance_sampling_from_the_loss_pass_matches_trls_extra_pass(tmp_path):
    from pathlib import Path

    from datasets import Dataset
    from transformers import AutoTokenizer, MixtralForCausalLM
    from trl import GRPOConfig

    from rl.trainer import MoEGRPOTrainer
    from tasks.prompts import format_prompt
    from tasks.toy import make_problems

    folder = str(Path(__file__).resolve().parents[1] / TOY)
    prompts = [format_prompt(row["question"]) for row in make_problems("train", 2)]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model = MixtralForCausalLM.from_pretrained(folder, dtype=torch.float32)
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=128, beta=0.0, loss_type="grpo", use_vllm=True, vllm_mode="colocate",
                      vllm_gpu_memory_utilization=0.3, vllm_max_model_length=256,
                      vllm_importance_sampling_clip_min=0.5,
                      report_to="none", save_strategy="no", disable_tqdm=True, seed=0, bf16=False)
    trainer = MoEGRPOTrainer(model=model, reward_funcs=[digit_reward], args=args,
                             train_dataset=Dataset.from_list([{"prompt": p} for p in prompts] * 8),
                             processing_class=tokenizer,
                             sync_vllm_weights=False)  # the engine keeps the checkpoint: ratios far from 1
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(torch.randn_like(p), alpha=0.05)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    assert trainer._loss_pass_gives_old_logps()
    batch = [{"prompt": p} for p in prompts for _ in range(4)]  # 2 groups of 4

    passes = []
    logps = trainer._get_per_token_logps_and_entropies

    def counted(model, *a, **kw):
        passes.append(model)
        return logps(model, *a, **kw)

    trainer._get_per_token_logps_and_entropies = counted
    lab_rollouts = trainer._generate_and_score_completions(batch)
    assert passes == [] and trainer.vllm_importance_sampling_correction  # no extra pass; the flag is back
    assert "old_per_token_logps" not in lab_rollouts and "importance_sampling_ratio" not in lab_rollouts
    assert lab_rollouts["sampling_per_token_logps"] is not None
    del trainer._get_per_token_logps_and_entropies

    ratios = []
    sampling_ratio = trainer._sampling_ratio
    trainer._sampling_ratio = lambda *a: ratios.append(sampling_ratio(*a)) or ratios[-1]
    for mode in MODES:
        trainer.vllm_importance_sampling_mode = mode
        trainer.reuse_loss_logps = False
        rollouts = trainer._generate_and_score_completions(batch)  # TRL's path: extra pass, ratio
        expected = rollouts["importance_sampling_ratio"]
        assert (expected - 1).abs().max() > 0.05, "the test needs an engine that lags the policy"
        assert not rollouts["completion_mask"].all(), "the test needs completions of different lengths"
        results = []
        stripped = {k: v for k, v in rollouts.items() if k not in ("old_per_token_logps", "importance_sampling_ratio")}
        for reuse, inputs in ((False, rollouts), (True, stripped)):
            trainer.reuse_loss_logps = reuse
            trainer.model.zero_grad()
            loss = trainer._compute_loss(trainer.model, inputs)
            loss.backward()
            results.append((loss.detach(), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]))
        ratio = ratios.pop()
        assert not ratios
        assert ratio.shape == expected.shape
        torch.testing.assert_close(ratio, expected, rtol=1e-5, atol=1e-6, msg=f"{mode}: ratio")
        (trl_loss, trl_grads), (lab_loss, lab_grads) = results
        torch.testing.assert_close(lab_loss, trl_loss, rtol=1e-5, atol=1e-7, msg=f"{mode}: loss")
        assert len(lab_grads) == len(trl_grads) > 0
        for lab, trl in zip(lab_grads, trl_grads):
            torch.testing.assert_close(lab, trl, rtol=1e-4, atol=1e-7, msg=f"{mode}: gradients")
    metrics = trainer._metrics["train"]
    assert len(metrics["sampling/importance_sampling_ratio/mean"]) >= 2 * len(MODES)  # TRL's and the lab's
