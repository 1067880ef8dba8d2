"""The checkpoint index: every model the lab knows, with its architecture and exact parameter counts.

Three sources, one table:
  1. the released llm-jp `optimal-sparsity` checkpoints (`released.csv`: the grid as published;
     parameter counts are *computed* from the architecture, never copied, so a test can check the
     formula against every name's TOTAL/ACTIVE label);
  2. the lab's toy family, discovered from `checkpoints_index/toy/models/<name>/config.json`;
  3. locally registered checkpoints (GRPO outputs, user models) in a JSONL registry
     (`$MOELAB_REGISTRY`, default `outputs/checkpoints.jsonl` under the working directory),
     so `moelab sweep` can evaluate any of them by name.

Parameter counts follow the Mixtral layout (docs/study.md, "Parameter counts"): per layer
q,k,v,o + two RMSNorms + router, E experts of 3*D*F (SwiGLU w1, w3, w2), embeddings and lm_head
(untied) and a final norm. "Active" counts K experts per layer and the embeddings.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import os
import re
from functools import lru_cache
from pathlib import Path

from core.errors import UserError

INDEX_DIR = Path(__file__).resolve().parent
RELEASED_CSV = INDEX_DIR / "released.csv"
TOY_MODELS_DIR = INDEX_DIR / "toy" / "models"
RELEASED_VOCAB = 99_584  # llm-jp tokenizer v3.0, padded
PRETRAINING_TOKENS = 125e9  # every released checkpoint saw 125B tokens; TPP = tokens / total params

CSV_COLUMNS = ["name", "hf_id", "domain", "d_model", "num_layers", "num_heads", "num_experts", "top_k",
               "ffn_hidden", "vocab_size", "total_params", "active_params", "tpp", "density", "local_path",
               "base_model", "step"]


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """One row of the index. `local_path` is set for models that live on disk (toy, registered)."""

    name: str
    hf_id: str | None
    domain: str
    d_model: int
    num_layers: int
    num_heads: int
    num_experts: int
    top_k: int
    ffn_hidden: int
    vocab_size: int
    total_params: int
    active_params: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    tied_embeddings: bool = False
    local_path: str | None = None
    base_model: str | None = None
    step: int | None = None
    training_tokens: float | None = PRETRAINING_TOKENS

    @property
    def tpp(self) -> float:
        """Training tokens per total parameter (the study's x axis; reasoning peaks near ~20)."""
        return self.training_tokens / self.total_params if self.training_tokens else float("nan")

    @property
    def density(self) -> float:
        return self.top_k / self.num_experts

    def as_row(self) -> dict:
        row = {col: getattr(self, col) for col in CSV_COLUMNS}
        row["tpp"] = round(self.tpp, 4) if self.training_tokens else ""
        row["density"] = round(self.density, 6)
        return {k: ("" if v is None else v) for k, v in row.items()}


def count_params(d_model: int, num_layers: int, num_heads: int, num_experts: int, top_k: int, ffn_hidden: int,
                 vocab_size: int, num_kv_heads: int | None = None, head_dim: int | None = None,
                 tied_embeddings: bool = False) -> tuple[int, int]:
    """(total, active) parameters of a Mixtral with these sizes; no biases, as in Mixtral."""
    kv_heads = num_kv_heads or num_heads
    hd = head_dim or d_model // num_heads
    attention = d_model * num_heads * hd * 2 + d_model * kv_heads * hd * 2  # q, o + k, v
    shared = attention + 2 * d_model + d_model * num_experts  # + two RMSNorms + router
    expert = 3 * d_model * ffn_hidden  # SwiGLU: w1, w3 (D->F) and w2 (F->D)
    embeddings = vocab_size * d_model * (1 if tied_embeddings else 2)
    total = num_layers * (shared + num_experts * expert) + embeddings + d_model
    active = num_layers * (shared + top_k * expert) + embeddings + d_model
    return total, active


def info_from_config(name: str, config: dict, *, domain: str, hf_id: str | None = None,
                     local_path: str | None = None, base_model: str | None = None, step: int | None = None,
                     training_tokens: float | None = None) -> CheckpointInfo:
    """Build an index row from a transformers MixtralConfig dict (config.json)."""
    try:
        sizes = dict(d_model=int(config["hidden_size"]), num_layers=int(config["num_hidden_layers"]),
                     num_heads=int(config["num_attention_heads"]), num_experts=int(config["num_local_experts"]),
                     top_k=int(config["num_experts_per_tok"]), ffn_hidden=int(config["intermediate_size"]),
                     vocab_size=int(config["vocab_size"]))
    except KeyError as err:
        raise UserError(f"{local_path or name}: config.json has no {err.args[0]!r}; is it a Mixtral checkpoint?")
    extra = dict(num_kv_heads=config.get("num_key_value_heads"), head_dim=config.get("head_dim"),
                 tied_embeddings=bool(config.get("tie_word_embeddings", False)))
    total, active = count_params(**sizes, **extra)
    return CheckpointInfo(name=name, hf_id=hf_id, domain=domain, **sizes, **extra, total_params=total,
                          active_params=active, local_path=local_path, base_model=base_model, step=step,
                          training_tokens=training_tokens)


def _released() -> list[CheckpointInfo]:
    rows = []
    with RELEASED_CSV.open() as f:
        for r in csv.DictReader(f):
            d, e, k = int(r["d_model"]), int(r["num_experts"]), int(r["top_k"])
            sizes = dict(d_model=d, num_layers=int(r["num_layers"]), num_heads=int(r["num_heads"]), num_experts=e,
                         top_k=k, ffn_hidden=int(r["ffn_hidden"]), vocab_size=RELEASED_VOCAB)
            total, active = count_params(**sizes)
            prefix = "" if r["domain"] == "math" else f"{r['domain']}-"
            rows.append(CheckpointInfo(name=f"{prefix}d{d}-E{e}-k{k}", hf_id=r["hf_id"], domain=r["domain"],
                                       **sizes, total_params=total, active_params=active))
    return rows


def _toy() -> list[CheckpointInfo]:
    rows = []
    for config_path in sorted(TOY_MODELS_DIR.glob("*/config.json")):
        config = json.loads(config_path.read_text())
        tokens = config.get("moelab_training_tokens")
        rows.append(info_from_config(config_path.parent.name, config, domain="toy",
                                     local_path=str(config_path.parent), training_tokens=tokens))
    return rows


def registry_path() -> Path:
    return Path(os.environ.get("MOELAB_REGISTRY", Path.cwd() / "outputs" / "checkpoints.jsonl"))


def _registered() -> list[CheckpointInfo]:
    path = registry_path()
    if not path.is_file():
        return []
    latest: dict[str, CheckpointInfo] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            config = json.loads((Path(entry["path"]) / "config.json").read_text())
        except (ValueError, KeyError, OSError):
            continue  # a half-written line or a deleted checkpoint must not break the whole index
        latest[entry["name"]] = info_from_config(
            entry["name"], config, domain=entry.get("domain", "local"), local_path=entry["path"],
            base_model=entry.get("base_model"), step=entry.get("step"))
    return list(latest.values())


@lru_cache(maxsize=1)
def _static_entries() -> tuple[CheckpointInfo, ...]:
    return tuple(_released() + _toy())


def all_checkpoints() -> list[CheckpointInfo]:
    """Every known checkpoint: released, toy, registered (registered names win on a clash)."""
    entries = {info.name: info for info in _static_entries()}
    entries.update({info.name: info for info in _registered()})
    return list(entries.values())


def _aliases(info: CheckpointInfo) -> list[str]:
    names = [info.name]
    if info.hf_id:
        names.append(info.hf_id)
        names.append(info.hf_id.split("/", 1)[1])
        if info.domain == "math":
            names.append(f"math-{info.name}")
    return names


def resolve(name_or_path: str) -> CheckpointInfo:
    """An index name (`d1024-E16-k2`, `math-d1024-E16-k2`, the hub id, `toy-d64-E8-k2`, a registered
    name) or a local checkpoint directory -> its CheckpointInfo. Unknown -> UserError with suggestions."""
    key = str(name_or_path).strip()
    known: dict[str, CheckpointInfo] = {}
    for info in all_checkpoints():
        for alias in _aliases(info):
            known.setdefault(alias.lower(), info)
    if key.lower() in known:
        return known[key.lower()]
    path = Path(key).expanduser()
    if (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
        return info_from_config(str(path), config, domain="local", local_path=str(path.resolve()),
                                training_tokens=config.get("moelab_training_tokens"))
    if path.exists():
        raise UserError(f"{key}: directory has no config.json; pass a saved transformers checkpoint directory")
    spelled = {alias.lower(): alias for info in known.values() for alias in _aliases(info)}
    close = [spelled[c] for c in difflib.get_close_matches(key.lower(), list(known), n=5, cutoff=0.6)]
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise UserError(f"unknown checkpoint '{key}' (not an index name, hub id or local directory){hint}. "
                    f"List them with `moelab checkpoints`")


def register_checkpoint(name: str, path: str | Path, base_model: str | None = None, step: int | None = None,
                        domain: str = "local") -> CheckpointInfo:
    """Add a local checkpoint (e.g. a GRPO output) to the registry so every command accepts its name."""
    path = Path(path).resolve()
    if not (path / "config.json").is_file():
        raise UserError(f"cannot register '{name}': {path} has no config.json")
    if re.search(r"\s", name):
        raise UserError(f"checkpoint name '{name}' must not contain spaces")
    registry = registry_path()
    registry.parent.mkdir(parents=True, exist_ok=True)
    entry = {"name": name, "path": str(path), "base_model": base_model, "step": step, "domain": domain}
    with registry.open("a") as f:  # one short line per append: atomic enough for concurrent writers
        f.write(json.dumps(entry) + "\n")
    return resolve(name)


def filter_checkpoints(entries: list[CheckpointInfo], d_model: list[int] | None = None,
                       experts: list[int] | None = None, top_k: list[int] | None = None,
                       domain: list[str] | None = None) -> list[CheckpointInfo]:
    def keep(info: CheckpointInfo) -> bool:
        return ((not d_model or info.d_model in d_model) and (not experts or info.num_experts in experts)
                and (not top_k or info.top_k in top_k) and (not domain or info.domain in domain))

    return [info for info in entries if keep(info)]
