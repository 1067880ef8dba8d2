"""Greedy decoding with transformers' batched `generate`: the one definition the GRPO eval callback
(`rl.callbacks`) and the toy grid (`inference.toy.grid`) call.

Why HF `generate` and not a backend: both callers already hold the model in memory (the trainer's
model, mid-training; a toy member of ~1M parameters, where an engine start costs more than the
decoding). Why every option is explicit: the callers differ on purpose and silently differing copies
are how evaluations drift apart. The GRPO callback renders prompts with the chat template, which
already holds BOS (`add_special_tokens=False`), keeps raw text (its reward functions see the whole
continuation), moves inputs to the model's device and runs every batch in the order given, so that
all ZeRO-3 ranks step through the same forwards (`synced_gpus`). The toy grid passes plain-text
prompts (the tokenizer adds BOS), cuts at the study's stop strings and sorts prompts by length so
batches pad least.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from inference.generation.backends import truncate_at_stop


def greedy_completions(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int,
                       batch_size: int, add_special_tokens: bool, stop: Sequence[str] = (),
                       sort_by_length: bool = False, synced_gpus: bool = False) -> list[str]:
    """Greedy continuation of each prompt, in the prompts' order: batched, left-padded, special tokens
    skipped when decoding, cut at the first of `stop` (kept whole when `stop` is empty). The model is in
    eval mode while decoding and back in its previous mode afterwards."""
    order = list(range(len(prompts)))
    if sort_by_length:
        order.sort(key=lambda i: len(prompts[i]))
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    texts: dict[int, str] = {}
    try:
        with torch.no_grad():  # not inference_mode: ZeRO-3 gathers parameters in hooks
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                inputs = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                                   add_special_tokens=add_special_tokens).to(model.device)
                generated = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                           pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                           synced_gpus=synced_gpus, temperature=None, top_p=None, top_k=None)
                new_tokens = generated[:, inputs["input_ids"].shape[1]:]
                for i, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                    texts[i] = truncate_at_stop(text, stop)[0]
    finally:
        model.train(was_training)
    return [texts[i] for i in range(len(prompts))]
