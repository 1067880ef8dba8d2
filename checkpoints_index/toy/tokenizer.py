"""The toy family's tokenizer: a small byte-level BPE trained locally on the toy corpus.

Why: the released llm-jp tokenizer cannot be downloaded here, and a 100k vocabulary would be most of
a 1M-parameter model. Digits are pre-split into single characters (as in Llama/llm-jp), so numbers
are spelled digit by digit and arithmetic is learnable; byte-level fallback means any text encodes.
No BOS is prepended: the QA prompt and the chat-template prompt then tokenize to the same ids.
The chat template renders a user turn as the study's QA prompt (`Question: {q}\\nAnswer:`), so
GRPO's chat-format prompts and the sweeps' QA prompts look identical to the model.
"""

from __future__ import annotations

from typing import Iterable

from tasks.prompts import CHAT_TEMPLATE

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"

def train_tokenizer(texts: Iterable[str], vocab_size: int = 400):
    """Train the byte-level BPE on `texts`; returns a transformers `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=256)
    fast.chat_template = CHAT_TEMPLATE
    return fast
