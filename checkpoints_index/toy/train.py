"""Train the toy sparsity family from one recipe (`configs/toy/train.yaml`), reproducibly from its seed.

Every member gets the same tokenizer, data, data order, token budget, initialisation seed and
optimizer; only `num_local_experts` (E) and `num_experts_per_tok` (k) differ, mirroring the study's
grid (growing E at fixed k = more total parameters at fixed active ones; growing k at fixed E =
more active parameters). The loss is next-token cross-entropy on the answer tokens only (the
prompt is the study's `Question: {q}\\nAnswer:`), plus Mixtral's load-balancing loss with the
recipe's explicit coefficient. A plain loop rather than `transformers.Trainer`: the whole job is
~100 lines, runs a few minutes on 2 cores, and its determinism is easy to see.

    moelab toy train configs/toy/train.yaml [key=value ...]
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

from core.errors import UserError

MEMBER_PATTERN = re.compile(r"^E(\d+)-k(\d+)$")


def parse_member(spec: str) -> tuple[int, int]:
    """'E8-k2' -> (8, 2); UserError on anything else."""
    match = MEMBER_PATTERN.match(spec.strip())
    if not match:
        raise UserError(f"members: {spec!r} must look like 'E8-k2' (experts, top-k)")
    experts, top_k = int(match[1]), int(match[2])
    if not 2 <= top_k <= experts:
        raise UserError(f"members: {spec!r} needs 2 <= k <= E (with k=1 Mixtral's router gets no task gradient)")
    return experts, top_k


def member_name(hidden_size: int, experts: int, top_k: int) -> str:
    return f"toy-d{hidden_size}-E{experts}-k{top_k}"


def prompt_of(question: str) -> str:
    """The study's zero-shot QA prompt (kept literal here so this module stays import-light)."""
    return f"Question: {question}\nAnswer:"


def training_rows(cfg: Any) -> list[dict]:
    from tasks.toy import make_problems

    task = cfg.task
    return make_problems("train", task.num_train_problems, seed=cfg.seed, min_steps=task.min_steps,
                         max_steps=task.max_steps, max_operand=task.max_operand)


def fact_rows(cfg: Any) -> list[dict]:
    """The memorization control's facts of this recipe (`task.num_facts` at `seed`; none when 0)."""
    from tasks.toy_facts import make_facts

    return make_facts(cfg.task.num_facts, seed=cfg.seed)


def facts_per_batch(cfg: Any) -> int:
    task = cfg.task
    if task.num_facts == 0:
        return 0
    count = round(task.fact_share * cfg.optim.batch_size)
    if count == 0:
        raise UserError(f"task.fact_share={task.fact_share} x optim.batch_size={cfg.optim.batch_size} rounds to no "
                        f"fact per batch; raise fact_share or set task.num_facts=0")
    return count


def build_tokenizer(rows: list[dict], vocab_size: int):
    from checkpoints_index.toy.tokenizer import train_tokenizer

    return train_tokenizer((f"{prompt_of(r['question'])} {r['solution']}" for r in rows), vocab_size)


def encode(rows: list[dict], tokenizer) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per row: prompt and answer are tokenized apart, as at inference."""
    prompts = tokenizer([prompt_of(r["question"]) for r in rows], add_special_tokens=False).input_ids
    answers = tokenizer([" " + r["solution"] for r in rows], add_special_tokens=False).input_ids
    return [(p + a + [tokenizer.eos_token_id], len(p)) for p, a in zip(prompts, answers)]


def model_config(cfg: Any, experts: int, top_k: int, tokenizer):
    from transformers import MixtralConfig

    m = cfg.model
    if m.hidden_size % m.num_heads:
        raise UserError("model.hidden_size must be divisible by model.num_heads")
    return MixtralConfig(
        vocab_size=len(tokenizer), hidden_size=m.hidden_size, intermediate_size=m.expert_ffn,
        num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_heads,
        head_dim=m.hidden_size // m.num_heads, max_position_embeddings=m.max_positions,
        num_local_experts=experts, num_experts_per_tok=top_k, tie_word_embeddings=m.tie_embeddings,
        router_aux_loss_coef=cfg.optim.router_aux_loss_coef, output_router_logits=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, dtype="float32")


def count_params(model) -> tuple[int, int]:
    """(total, active): active drops the (E - k) experts a token does not use, in every layer."""
    config = model.config
    total = sum(p.numel() for p in model.parameters())
    expert_params = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
    per_expert = expert_params // config.num_local_experts
    return total, total - per_expert * (config.num_local_experts - config.num_experts_per_tok)


def _batch(examples: list[tuple[list[int], int]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(examples):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        labels[row, prompt_len:len(ids)] = torch.tensor(ids[prompt_len:])  # loss on the answer only
        mask[row, :len(ids)] = 1
    return input_ids, labels, mask


def train_member(cfg: Any, experts: int, top_k: int, tokenizer, data: list[tuple[list[int], int]],
                 out_dir: Path, facts: list[tuple[list[int], int]] = ()) -> dict:
    """Train one member from the recipe's seed and save it (weights, tokenizer, training.json).

    Every batch holds `facts_per_batch(cfg)` fact sequences (drawn in their own seeded order, so the
    reasoning data order does not depend on the facts) and the rest reasoning problems."""
    import torch
    from tqdm import tqdm
    from transformers import MixtralForCausalLM, get_cosine_with_min_lr_schedule_with_warmup

    opt = cfg.optim
    torch.manual_seed(cfg.seed)
    model = MixtralForCausalLM(model_config(cfg, experts, top_k, tokenizer)).float().train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opt.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=opt.lr, betas=(0.9, 0.95))
    schedule = get_cosine_with_min_lr_schedule_with_warmup(optimizer, opt.warmup_steps, opt.steps,
                                                           min_lr_rate=opt.min_lr_ratio)
    order = torch.Generator().manual_seed(cfg.seed)  # the same data order for every member
    permutation, cursor = torch.randperm(len(data), generator=order).tolist(), 0
    num_fact_rows = facts_per_batch(cfg) if facts else 0
    fact_order = torch.Generator().manual_seed(cfg.seed + 1)
    fact_permutation, fact_cursor = (torch.randperm(len(facts), generator=fact_order).tolist() if facts else []), 0
    reasoning_rows = opt.batch_size - num_fact_rows
    losses, aux_losses, tokens_seen = [], [], 0
    name = member_name(cfg.model.hidden_size, experts, top_k)
    start = time.time()
    bar = tqdm(range(opt.steps), desc=name, unit="step", dynamic_ncols=True)
    for _ in bar:
        if cursor + reasoning_rows > len(permutation):
            permutation, cursor = torch.randperm(len(data), generator=order).tolist(), 0
        examples = [data[i] for i in permutation[cursor:cursor + reasoning_rows]]
        cursor += reasoning_rows
        if num_fact_rows:
            if fact_cursor + num_fact_rows > len(fact_permutation):
                fact_permutation, fact_cursor = torch.randperm(len(facts), generator=fact_order).tolist(), 0
            examples += [facts[i] for i in fact_permutation[fact_cursor:fact_cursor + num_fact_rows]]
            fact_cursor += num_fact_rows
        input_ids, labels, mask = _batch(examples, tokenizer.pad_token_id)
        out = model(input_ids=input_ids, attention_mask=mask, labels=labels, output_router_logits=True)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
        optimizer.step()
        schedule.step()
        aux = float(out.aux_loss) if out.aux_loss is not None else 0.0
        task_loss = float(out.loss) - opt.router_aux_loss_coef * aux
        if not math.isfinite(task_loss):
            raise RuntimeError(f"{name}: loss became {task_loss}; lower optim.lr")
        losses.append(task_loss)
        aux_losses.append(aux)
        tokens_seen += int(mask.sum())
        bar.set_postfix(loss=f"{task_loss:.3f}", aux=f"{aux:.2f}")
    seconds = time.time() - start
    total, active = count_params(model)
    tail = max(1, min(50, len(losses)))
    stats = {"name": name, "num_experts": experts, "top_k": top_k, "total_params": total, "active_params": active,
             "final_train_loss": sum(losses[-tail:]) / tail, "final_aux_loss": sum(aux_losses[-tail:]) / tail,
             "steps": opt.steps, "batch_size": opt.batch_size, "tokens_seen": tokens_seen,
             "peak_lr": opt.lr, "final_lr": schedule.get_last_lr()[0],
             "train_seconds": round(seconds, 1), "seed": cfg.seed,
             "num_train_problems": cfg.task.num_train_problems, "num_facts": cfg.task.num_facts if facts else 0,
             "facts_per_batch": num_fact_rows}
    save_member(model, tokenizer, out_dir, stats)
    return stats


def save_member(model, tokenizer, out_dir: Path, stats: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.config.output_router_logits = False  # inference default; GRPO turns it on explicitly
    model.config.moelab_training_tokens = stats["tokens_seen"]  # read by the checkpoint index
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "training.json").write_text(json.dumps(stats, indent=2) + "\n")


def train_family(cfg: Any) -> list[dict]:
    """Train every member of `cfg.members` in order; returns their stats (also in each training.json)."""
    import torch

    from core.config import save_resolved_config

    members = [parse_member(spec) for spec in cfg.members]
    if not members:
        raise UserError("members: list at least one member, e.g. members=[E8-k2]")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rows, fact_list = training_rows(cfg), fact_rows(cfg)
    facts_per_batch(cfg)  # a bad fact_share fails here, before any member trains
    tokenizer = build_tokenizer(rows + fact_list, cfg.vocab_size)
    data, facts = encode(rows, tokenizer), encode(fact_list, tokenizer)
    results = []
    for experts, top_k in members:
        out_dir = Path(cfg.output_dir) / member_name(cfg.model.hidden_size, experts, top_k)
        stats = train_member(cfg, experts, top_k, tokenizer, data, out_dir, facts)
        save_resolved_config(cfg, out_dir, name="recipe.yaml")
        print(f"{stats['name']}: loss {stats['final_train_loss']:.4f}, {stats['total_params']:,} params "
              f"({stats['active_params']:,} active), {stats['train_seconds']:.0f} s -> {out_dir}", flush=True)
        results.append(stats)
    return results
