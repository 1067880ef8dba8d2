"""Reward-model scores of stored samples, for best-of-n and reward-weighted voting.

The study ranked samples with sequence-classification reward models whose input is the chat
[user: question, assistant: sample] (`docs/study.md`, "Test-time compute as the study ran it"). Three
adapters, `kind` (auto-detected from the name, or set with `scoring.reward_model_kind`):

- `armo`: ArmoRM (`RLHFlow/ArmoRM-Llama3-8B-v0.1`, the study's released job): custom modelling code,
  loaded with `trust_remote_code=True`; the score is `output.score`; one conversation per forward, the
  chat template truncated to 4,096 tokens, as the study ran it.
- `skywork`: Skywork reward models: one output logit, mapped through a sigmoid as the study did.
- `sequence_classification`: any other `AutoModelForSequenceClassification` with one output: its logit.

A model whose score head the loader had to initialise (weights missing from the checkpoint, e.g.
ArmoRM loaded without its custom code) is refused: its scores would be random with only a warning.
Scores are cached per sample key (the store's content address), reward model and adapter, in a
parquet file under the store, so re-aggregating or adding samples never recomputes a score, and
scoring never touches the generating model: it reads completions from the store.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Sequence

from core.errors import UserError
from core.files import atomic_write

REWARD_MODEL_KINDS = ("auto", "armo", "skywork", "sequence_classification")
STUDY_REWARD_MODEL = "RLHFlow/ArmoRM-Llama3-8B-v0.1"


def reward_model_kind(name_or_path: str, kind: str = "auto") -> str:
    """The adapter for a reward model: `kind` itself, or guessed from the name when `auto`."""
    if kind not in REWARD_MODEL_KINDS:
        raise UserError(f"scoring.reward_model_kind must be one of {', '.join(REWARD_MODEL_KINDS)}; got {kind!r}")
    if kind != "auto":
        return kind
    name = Path(str(name_or_path)).name.lower()
    return "armo" if "armorm" in name else "skywork" if "skywork" in name else "sequence_classification"


def load_reward_model(name_or_path: str, dtype: str = "float32", device: str = "cpu", kind: str = "auto",
                      trust_remote_code: bool | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) with a pad token and a chat template guaranteed; refuses fresh score heads.

    `trust_remote_code`: None = only for `armo` (ArmoRM's custom code); True runs the repository's code."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kind = reward_model_kind(name_or_path, kind)
    trust = kind == "armo" if trust_remote_code is None else bool(trust_remote_code)
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    extra = {"num_labels": 1} if kind == "skywork" else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, dtype=dtypes[dtype], trust_remote_code=trust, output_loading_info=True, **extra)
    except OSError as err:
        raise UserError(f"cannot load reward model '{name_or_path}': {str(err).splitlines()[0]}. Pass a local "
                        f"directory (scoring.reward_model=DIR) when the hub is unreachable") from None
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise UserError(f"reward model '{name_or_path}' ships its own modelling code: set "
                            f"scoring.reward_model_kind=armo or scoring.reward_model_trust_remote_code=true "
                            f"(it runs that repository's code)") from None
        raise
    fresh = [*info.get("missing_keys", []), *[str(m[0]) for m in info.get("mismatched_keys", [])]]
    if fresh:
        raise UserError(f"reward model '{name_or_path}': {len(fresh)} weights are not in the checkpoint "
                        f"({', '.join(sorted(fresh)[:3])}...) and would be freshly initialised, so its scores would "
                        f"be random; ArmoRM needs scoring.reward_model_kind=armo (its custom code)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(tokenizer, "chat_template", None) is None:
        from tasks.prompts import CHAT_TEMPLATE

        tokenizer.chat_template = CHAT_TEMPLATE
    model.moelab_kind = kind
    return model.to(device).eval(), tokenizer


def conversation_text(tokenizer: Any, question: str, completion: str) -> str:
    """The reward model's input: [user question, assistant sample] through its chat template."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": completion.strip()}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def _armo_scores(model: Any, tokenizer: Any, questions: Sequence[str], completions: Sequence[str],
                 max_length: int, bar: Any) -> list[float]:
    """The study's ArmoRM call: one conversation per forward (custom code, no padding), `output.score`."""
    import torch

    device = next(model.parameters()).device
    scores = []
    for question, completion in zip(questions, completions):
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": completion}]
        ids = tokenizer.apply_chat_template(messages, return_tensors="pt", truncation=True, max_length=max_length,
                                            return_dict=False)
        ids = ids if isinstance(ids, torch.Tensor) else torch.tensor([ids])
        scores.append(float(model(ids.to(device)).score.float().reshape(-1)[0]))
        bar.update(1)
    return scores


def score_with_reward_model(model: Any, tokenizer: Any, questions: Sequence[str], completions: Sequence[str],
                            batch_size: int = 16, max_length: int = 4096, progress: bool = True) -> list[float]:
    """One float per (question, completion), by the model's adapter (`load_reward_model` sets it)."""
    import torch
    from tqdm.auto import tqdm

    kind = getattr(model, "moelab_kind", "sequence_classification")
    bar = tqdm(total=len(questions), desc="reward model", unit="sample", disable=not progress)
    with torch.inference_mode(), bar:
        if kind == "armo":
            return _armo_scores(model, tokenizer, questions, completions, max_length, bar)
        texts = [conversation_text(tokenizer, q, c) for q, c in zip(questions, completions)]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
        scores = [0.0] * len(texts)
        device = next(model.parameters()).device
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            inputs = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True, truncation=True,
                               max_length=max_length, add_special_tokens=False).to(device)
            logits = model(**inputs).logits
            for i, value in zip(batch, logits[:, 0].float().tolist()):
                scores[i] = 1.0 / (1.0 + math.exp(-value)) if kind == "skywork" else float(value)
            bar.update(len(batch))
    return scores


def _cache_path(cache_dir: Path, reward_model: str, kind: str) -> Path:
    identity = str(Path(reward_model).resolve()) if Path(reward_model).exists() else reward_model
    if kind != "sequence_classification":  # the plain adapter keeps the cache files of earlier runs
        identity += f"|{kind}"
    return cache_dir / f"rm-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.parquet"


def reward_model_scores(reward_model: str, keys: Sequence[str], questions: Sequence[str],
                        completions: Sequence[str], cache_dir: str | Path, batch_size: int = 16,
                        dtype: str = "float32", kind: str = "auto",
                        trust_remote_code: bool | None = None) -> list[float]:
    """Scores for samples identified by their store `keys`; only keys missing from the cache are computed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = reward_model_kind(reward_model, kind)
    path = _cache_path(Path(cache_dir), reward_model, kind)
    cached: dict[str, float] = {}
    if path.is_file():
        table = pq.read_table(path)
        cached = dict(zip(table.column("key").to_pylist(), table.column("rm_score").to_pylist()))
    todo = sorted({k: i for i, k in enumerate(keys) if k not in cached}.values())
    if todo:
        model, tokenizer = load_reward_model(reward_model, dtype=dtype, kind=kind, trust_remote_code=trust_remote_code)
        new = score_with_reward_model(model, tokenizer, [questions[i] for i in todo], [completions[i] for i in todo],
                                      batch_size=batch_size)
        cached.update({keys[i]: s for i, s in zip(todo, new)})
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table({"key": list(cached), "rm_score": list(cached.values())})
        atomic_write(path, lambda temp: pq.write_table(table, temp))  # all-or-nothing, like the store's shards
    return [float(cached[k]) for k in keys]
