"""One code path from a name to a model: index name, hub id or local directory -> transformers / vLLM.

`load_checkpoint` returns (MixtralForCausalLM, tokenizer); `model_source` returns what vLLM's
`LLM(model=...)` takes. Both resolve through the checkpoint index, so a toy member, a GRPO output
registered by name and a released hub checkpoint are loaded the same way.

The hub is unreachable on the lab's CI machines, so `materialize_random` writes an
architecture-exact random Mixtral (with a byte-level stand-in tokenizer, since the real llm-jp
tokenizer cannot be downloaded there) for benchmarks and tests at real size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkpoints_index.index import RELEASED_VOCAB, CheckpointInfo, resolve
from core.errors import UserError
from tasks.prompts import CHAT_TEMPLATE

def model_source(name_or_path: str, revision: str | None = None) -> str:
    """The local directory or hub id to load `name_or_path` from (what vLLM and transformers take)."""
    info = resolve(name_or_path)
    if info.local_path:
        return info.local_path
    if info.hf_id:
        return info.hf_id
    raise UserError(f"{name_or_path}: the index knows no location for it; pass a local checkpoint directory")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_FULL_HASH_BYTES = 256 * 2**20  # checkpoints up to this total size are hashed whole; larger ones are sampled
_SAMPLES, _SAMPLE_BYTES = 64, 64 * 1024


def weights_fingerprint(directory: str | Path) -> str:
    """A short hash that changes whenever the weights in a local checkpoint directory change.

    Why: samples are content-addressed by model and revision, and a local directory has no hub
    revision. Without this, retraining into the same directory (a GRPO run rerun with other settings,
    a toy member retrained) would silently reuse the old model's samples. A small checkpoint is hashed
    whole; in a large one every weight file is read as its size plus 64 evenly spaced 64 KiB windows
    (at most 4 MiB per file, whatever the sharding), which any real training step changes. config.json
    and file names are included.
    """
    import hashlib

    root = Path(directory)
    digest = hashlib.sha256()
    config = root / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise UserError(f"{root}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) to fingerprint")
    sizes = [f.stat().st_size for f in files]
    # Decided on the total, not per file: a 100 GB model in 400 small shards must not be read whole.
    whole_checkpoint = sum(sizes) <= _FULL_HASH_BYTES
    for path, size in zip(files, sizes):
        digest.update(f"{path.relative_to(root)}|{size}".encode())
        with path.open("rb") as handle:
            if whole_checkpoint or size <= _SAMPLES * _SAMPLE_BYTES:
                for block in iter(lambda: handle.read(2**20), b""):
                    digest.update(block)
                continue
            for i in range(_SAMPLES):
                handle.seek((size - _SAMPLE_BYTES) * i // (_SAMPLES - 1))
                digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def weights_version(source: str, revision: str | None) -> str | None:
    """A model's version wherever work is keyed by it (sample addresses, a GRPO run's identity): the
    fingerprint of the weights for a local directory, which has no revision, else the hub revision."""
    return f"weights-{weights_fingerprint(source)}" if Path(source).is_dir() else revision


def _torch_dtype(dtype: str) -> Any:
    import torch

    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise UserError(f"dtype must be one of {', '.join(table)}; got {dtype!r}")
    return table[dtype]


def load_checkpoint(name_or_path: str, dtype: str = "float32", revision: str | None = None,
                    output_router_logits: bool = False, device: str = "cpu") -> tuple[Any, Any]:
    """(MixtralForCausalLM, tokenizer) for an index name, hub id or local directory.

    `output_router_logits=True` makes the forward pass return router logits and add Mixtral's
    load-balancing aux loss (coefficient `router_aux_loss_coef` from the config) to the loss.
    """
    from transformers import AutoTokenizer, MixtralForCausalLM

    source = model_source(name_or_path, revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        model = MixtralForCausalLM.from_pretrained(source, revision=revision, dtype=_torch_dtype(dtype),
                                                   output_router_logits=output_router_logits)
    except OSError as err:
        raise UserError(_offline_message(name_or_path, source, err)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None) is None:
        tokenizer.chat_template = CHAT_TEMPLATE
    return model.to(device).eval(), tokenizer


def _offline_message(name: str, source: str, err: Exception) -> str:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if Path(source).exists():
        return f"cannot load {source}: {first_line}"
    return (f"cannot load '{name}' from the hub ({source}): not cached here and the hub is unreachable or the "
            f"repo is missing. Download it where there is internet (`hf download {source} --local-dir DIR`) and "
            f"pass DIR instead of the name, or run `moelab checkpoints materialize {name} --random-init --out DIR` "
            f"for a random stand-in of the same architecture")


def mixtral_config_for(info: CheckpointInfo, layers: int | None = None) -> Any:
    """The transformers MixtralConfig of a released checkpoint (docs/study.md, "Architecture")."""
    from transformers import MixtralConfig

    return MixtralConfig(
        vocab_size=info.vocab_size, hidden_size=info.d_model, intermediate_size=info.ffn_hidden,
        num_hidden_layers=layers or info.num_layers, num_attention_heads=info.num_heads,
        num_key_value_heads=info.num_kv_heads or info.num_heads, head_dim=info.head_dim or info.d_model // info.num_heads,
        num_local_experts=info.num_experts, num_experts_per_tok=info.top_k, rms_norm_eps=1e-5, rope_theta=10000.0,
        max_position_embeddings=4096, tie_word_embeddings=info.tied_embeddings, router_aux_loss_coef=0.01,
        bos_token_id=1, eos_token_id=2, pad_token_id=2)


def byte_level_tokenizer() -> Any:
    """A stand-in tokenizer: <unk>=0, <s>=1, </s>=2 (the llm-jp ids) and the 256 byte tokens, no merges.

    It covers every text and fits any vocabulary >= 259, so random-weight models of the released
    architecture can generate and be benchmarked; it spells text byte by byte, so token counts are
    several times a real BPE's.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def materialize_random(name: str, out_dir: str | Path, layers: int | None = None, seed: int = 0,
                       dtype: str = "bfloat16") -> Path:
    """Write an architecture-exact Mixtral with random weights for a released `name`, plus a stand-in
    tokenizer, to `out_dir` (loadable by transformers and vLLM). `layers` shrinks depth for tests."""
    import torch
    from transformers import MixtralForCausalLM

    info = resolve(name)
    if info.vocab_size < 259:
        raise UserError(f"{name}: vocabulary {info.vocab_size} is too small for the byte-level stand-in tokenizer")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = mixtral_config_for(info, layers)
    config.dtype = _torch_dtype(dtype)
    model = MixtralForCausalLM(config).to(_torch_dtype(dtype))
    model.save_pretrained(out)
    byte_level_tokenizer().save_pretrained(out)
    meta = {"materialized_from": info.name, "hf_id": info.hf_id, "random_init": True, "seed": seed,
            "num_layers": config.num_hidden_layers, "vocab_size": RELEASED_VOCAB}
    (out / "moelab_materialized.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
