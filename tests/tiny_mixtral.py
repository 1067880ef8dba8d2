"""Test fixture: a tiny random Mixtral with the toy tokenizer, for GRPO plumbing in tests and benches.

2 layers, hidden 64, 2 heads of 32 (vLLM-CPU's smallest supported head size), 8 experts top-2,
~0.5M parameters. It cannot solve anything; tests that need a model which learns use a toy family
member (`checkpoints_index/toy/models/`).
"""

from __future__ import annotations

from pathlib import Path


def tiny_mixtral(out_dir: str | Path, num_experts: int = 8, top_k: int = 2, seed: int = 0) -> str:
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    from checkpoints_index.toy.tokenizer import train_tokenizer
    from tasks.toy import make_problems

    rows = make_problems("train", 500)
    tokenizer = train_tokenizer([f"Question: {r['question']}\nAnswer: {r['solution']}" for r in rows], 400)
    torch.manual_seed(seed)
    config = MixtralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, head_dim=32, num_local_experts=num_experts,
                           num_experts_per_tok=top_k, max_position_embeddings=512, tie_word_embeddings=False,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id, router_aux_loss_coef=0.01)
    out = Path(out_dir)
    MixtralForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)
