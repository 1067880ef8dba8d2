"""Recipe schema of `moelab toy train` (kind `toy_train`): cheap to import, no torch here.

One recipe trains the whole family: every member shares depth, width, data, token budget and seed,
and differs only in its number of experts and top-k, as the study's grid does at full scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config import RunInOutputDir, config_field
from core.errors import UserError


@dataclass
class ToyModelConfig:
    hidden_size: int = config_field(64, "d_model of every member", at_least=1)
    num_layers: int = config_field(4, "transformer layers of every member", at_least=1)
    num_heads: int = config_field(2, "attention heads (head_dim = hidden_size / num_heads; vLLM-CPU needs >= 32)",
                                  at_least=1)
    expert_ffn: int = config_field(128, "intermediate size of each expert's SwiGLU FFN", at_least=1)
    max_positions: int = config_field(256, "max_position_embeddings (toy sequences are < 120 tokens)", at_least=1)
    tie_embeddings: bool = config_field(False, "tie input embeddings and LM head")


@dataclass
class ToyTaskConfig:
    num_train_problems: int = config_field(20000, "distinct training problems drawn from the train split", at_least=1)
    min_steps: int = config_field(1, "fewest +/- operations per problem", at_least=1)
    max_steps: int = config_field(3, "most +/- operations per problem", at_least=1)
    max_operand: int = config_field(30, "largest operand (and starting amount)", at_least=1)
    num_facts: int = config_field(
        200, "memorization control (tasks/toy_facts.py): number facts about synthetic people, seen only in "
              "training; 0 = reasoning only", at_least=0)
    fact_share: float = config_field(0.25, "share of every batch's sequences that are facts (fixed, so every "
                                           "member and data regime sees each fact equally often)",
                                      at_least=0, below=1)


@dataclass
class ToyOptimConfig:
    steps: int = config_field(1000, "optimizer steps per member (same token budget for all)", at_least=1)
    batch_size: int = config_field(32, "sequences per step", at_least=1)
    lr: float = config_field(3e-3, "peak AdamW learning rate", above=0)
    warmup_steps: int = config_field(50, "linear warm-up steps before the cosine decay", at_least=0)
    min_lr_ratio: float = config_field(
        0.1, "the cosine decays to min_lr_ratio x lr (the study: 4e-4 -> 4e-5); > 0 leaves a checkpoint that "
             "further training (GRPO, SFT) can move without first losing accuracy (rl/README.md, 'Learning')",
        at_least=0, at_most=1)
    weight_decay: float = config_field(0.01, "AdamW weight decay", at_least=0)
    grad_clip: float = config_field(1.0, "max global gradient norm", above=0)
    router_aux_loss_coef: float = config_field(
        0.01, "Mixtral load-balancing loss coefficient; the loss is ~k when balanced, so it pulls k times "
              "harder at larger top-k", at_least=0)


@dataclass
class ToyTrainConfig(RunInOutputDir):
    kind: str = config_field("toy_train", "recipe type")
    seed: int = config_field(0, "seed of data, tokenizer corpus, init and data order (same for every member)",
                             at_least=0)
    members: list[str] = config_field(["E4-k2", "E8-k2", "E16-k2", "E8-k4"],
                                      "members as 'E{experts}-k{top_k}'; saved as toy-d{hidden}-E{E}-k{K}")
    output_dir: str = config_field("checkpoints_index/toy/models", "where each member's directory is written")
    vocab_size: int = config_field(400, "byte-level BPE vocabulary (digits are always single tokens)", at_least=1)
    threads: int = config_field(
        1, "torch threads (0 = torch's default). 1 is robust on a shared machine (more threads on busy cores "
           "spin-wait in OpenMP barriers) and keeps float reductions, hence weights, bit-reproducible", at_least=0)
    model: ToyModelConfig = config_field(ToyModelConfig, "architecture shared by all members")
    task: ToyTaskConfig = config_field(ToyTaskConfig, "training data")
    optim: ToyOptimConfig = config_field(ToyOptimConfig, "optimizer and budget")

    @staticmethod
    def cross_check(cfg: Any) -> None:
        """Members spelled and sized as training will parse them; heads that divide the width; a step range;
        a fact share that gives every batch at least one fact."""
        from checkpoints_index.toy.train import facts_per_batch, parse_member  # stdlib-only module: cheap

        for spec in cfg.members:
            parse_member(spec)
        facts_per_batch(cfg)
        if cfg.model.hidden_size % cfg.model.num_heads:
            raise UserError(f"model.hidden_size={cfg.model.hidden_size} must be divisible by model.num_heads="
                            f"{cfg.model.num_heads}")
        if cfg.task.min_steps > cfg.task.max_steps:
            raise UserError(f"task.min_steps={cfg.task.min_steps} must be at most task.max_steps={cfg.task.max_steps}")
