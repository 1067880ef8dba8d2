"""Reward-model scores of stored samples, for best-of-n and reward-weighted voting.

The study ranked samples with sequence-classification reward models (ArmoRM-Llama3-8B, Skywork
reward models) whose input is the chat [user: question, assistant: sample]. Here any transformers
`AutoModelForSequenceClassification` with one output does that job: the conversation goes through
the reward model's own chat template (a `Question:/Answer:` fallback when it has none), batched
with samples of similar length together, and the first logit is the score.

Scores are cached per sample key (the store's content address) and reward model, in a parquet file
under the store, so re-aggregating or adding samples never recomputes a score, and scoring never
touches the generating model: it reads completions from the store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from core.errors import UserError
from core.files import atomic_write


def load_reward_model(name_or_path: str, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """(AutoModelForSequenceClassification, tokenizer), with a pad token and a chat template guaranteed."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, dtype=dtypes[dtype])
    except OSError as err:
        raise UserError(f"cannot load reward model '{name_or_path}': {str(err).splitlines()[0]}. Pass a local "
                        f"directory (scoring.reward_model=DIR) when the hub is unreachable") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(tokenizer, "chat_template", None) is None:
        from tasks.prompts import CHAT_TEMPLATE

        tokenizer.chat_template = CHAT_TEMPLATE
    return model.to(device).eval(), tokenizer


def conversation_text(tokenizer: Any, question: str, completion: str) -> str:
    """The reward model's input: [user question, assistant sample] through its chat template."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": completion.strip()}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def score_with_reward_model(model: Any, tokenizer: Any, questions: Sequence[str], completions: Sequence[str],
                            batch_size: int = 16, max_length: int = 4096, progress: bool = True) -> list[float]:
    """One float per (question, completion): the reward model's first logit."""
    import torch
    from tqdm.auto import tqdm

    texts = [conversation_text(tokenizer, q, c) for q, c in zip(questions, completions)]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch: less padding
    scores = [0.0] * len(texts)
    device = next(model.parameters()).device
    bar = tqdm(total=len(texts), desc="reward model", unit="sample", disable=not progress)
    with torch.inference_mode(), bar:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            inputs = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, truncation=True,
                               max_length=max_length, add_special_tokens=False).to(device)
            logits = model(**inputs).logits
            for i, value in zip(batch, logits[:, 0].float().tolist()):
                scores[i] = float(value)
            bar.update(len(batch))
    return scores


def _cache_path(cache_dir: Path, reward_model: str) -> Path:
    identity = str(Path(reward_model).resolve()) if Path(reward_model).exists() else reward_model
    return cache_dir / f"rm-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.parquet"


def reward_model_scores(reward_model: str, keys: Sequence[str], questions: Sequence[str],
                        completions: Sequence[str], cache_dir: str | Path, batch_size: int = 16,
                        dtype: str = "float32") -> list[float]:
    """Scores for samples identified by their store `keys`; only keys missing from the cache are computed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _cache_path(Path(cache_dir), reward_model)
    cached: dict[str, float] = {}
    if path.is_file():
        table = pq.read_table(path)
        cached = dict(zip(table.column("key").to_pylist(), table.column("rm_score").to_pylist()))
    todo = sorted({k: i for i, k in enumerate(keys) if k not in cached}.values())
    if todo:
        model, tokenizer = load_reward_model(reward_model, dtype=dtype)
        new = score_with_reward_model(model, tokenizer, [questions[i] for i in todo], [completions[i] for i in todo],
                                      batch_size=batch_size)
        cached.update({keys[i]: s for i, s in zip(todo, new)})
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table({"key": list(cached), "rm_score": list(cached.values())})
        atomic_write(path, lambda temp: pq.write_table(table, temp))  # all-or-nothing, like the store's shards
    return [float(cached[k]) for k in keys]
