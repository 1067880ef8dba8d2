"""`moelab taskloss`: the study's task loss, the NLL of a reference answer given its prompt, in bits.

What it reproduces exactly (taskloss-eval, `taskloss_eval/task_loss.py` in the authors' repository):
for each {prompt, answer}, vLLM `generate` on `prompt + answer` with `temperature=0`, `max_tokens=1`,
`prompt_logprobs=1`, `stop_token_ids=[eos]`; the answer's tokens are the positions >= len(encode(prompt))
of the concatenation (`add_special_tokens=True`, so a BOS is counted in the prompt where the tokenizer
adds one), NLL = minus the sum of their log-probabilities; per example bits/token = NLL / ln 2 /
answer tokens and bits/byte = NLL / ln 2 / UTF-8 bytes of the answer; the summary is the mean over
examples (taskloss-eval's AVG row).

What it adds: an HF backend (one batched forward pass, left-padded with explicit positions, logits
kept only for the answer positions) that agrees with vLLM to ~1e-4 bits/token in fp32; the
token-weighted mean (total NLL over total answer tokens) beside the per-example mean; chunked,
resumable output (`examples.jsonl`, one line per example, appended per chunk and fsynced; a line cut by a
kill is dropped on reading, so a cluster array's task, `--shard I/N` in `inference.jobs.shards`, leaves each
model done or resumable and the unsharded run afterwards scores nothing done); and a clear error
where taskloss-eval would divide by zero (an answer that adds no token) or vLLM would refuse a
prompt longer than the context. Prefix caching is off: prompt log-probabilities are computed for
every position only when no prefix is served from the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from core.errors import UserError
from core.files import atomic_write, atomic_write_csv

TASKLOSS_COLUMNS = ["model", "task", "num_examples", "bits_per_token", "bits_per_byte", "nll_nats", "answer_tokens",
                    "answer_bytes", "bits_per_token_weighted"]
LN2 = math.log(2)


@dataclass
class ExampleLoss:
    index: int
    nll_nats: float
    answer_tokens: int
    answer_bytes: int
    prompt_tokens: int

    @property
    def bits_per_token(self) -> float:
        return self.nll_nats / LN2 / self.answer_tokens

    @property
    def bits_per_byte(self) -> float:
        return self.nll_nats / LN2 / self.answer_bytes

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "bits_per_token": self.bits_per_token, "bits_per_byte": self.bits_per_byte}


def answer_span(tokenizer: Any, prompt: str, answer: str) -> tuple[list[int], int]:
    """(token ids of prompt + answer, number of prompt tokens): taskloss-eval's `_lengths`."""
    full = tokenizer.encode(prompt + answer, add_special_tokens=True)
    prompt_len = len(tokenizer.encode(prompt, add_special_tokens=True))
    return full, prompt_len


def _check_example(index: int, full: Sequence[int], prompt_len: int, answer: str, context: int | None) -> None:
    if len(full) - prompt_len <= 0 or not answer.encode():
        raise UserError(f"example {index}: its answer adds no token to the prompt ({answer[:40]!r}); fix the dataset")
    if context is not None and len(full) + 1 > context:
        raise UserError(f"example {index}: prompt + answer is {len(full)} tokens, beyond the model's context of "
                        f"{context} (one more token is generated); set limit, or backend.max_model_len")


class VLLMTaskLoss:
    """taskloss-eval's `TaskLoss.eval_batch` on a `vllm.LLM` (built here, or one passed in)."""

    name = "vllm"

    def __init__(self, source: str, *, dtype: str = "float32", enforce_eager: bool | None = True,
                 tensor_parallel_size: int = 1, max_model_len: int | None = None,
                 engine_kwargs: dict[str, Any] | None = None, llm: Any = None) -> None:
        if llm is None:
            from vllm import LLM

            from inference.generation.backends import cpu_engine_defaults

            kwargs: dict[str, Any] = dict(model=source, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                                          enable_prefix_caching=False, **cpu_engine_defaults())
            if enforce_eager is not None:
                kwargs["enforce_eager"] = enforce_eager
            if max_model_len:
                kwargs["max_model_len"] = max_model_len
            kwargs.update(engine_kwargs or {})
            llm = LLM(**kwargs)
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.context = llm.llm_engine.model_config.max_model_len

    def score(self, examples: Sequence[dict], first_index: int = 0) -> list[ExampleLoss]:
        from vllm import SamplingParams

        spans = [answer_span(self.tokenizer, e["prompt"], e["answer"]) for e in examples]
        for i, ((full, q_len), e) in enumerate(zip(spans, examples)):
            _check_example(first_index + i, full, q_len, e["answer"], self.context)
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1,
                                stop_token_ids=[self.tokenizer.eos_token_id])
        outputs = self.llm.generate([e["prompt"] + e["answer"] for e in examples], params, use_tqdm=False)
        losses = []
        for i, ((full, q_len), e, out) in enumerate(zip(spans, examples, outputs)):
            tokens = list(out.prompt_token_ids)
            if tokens != list(full):
                raise RuntimeError(f"example {first_index + i}: vLLM tokenized it differently from the tokenizer")
            nll = -sum(float(lp[t].logprob) for lp, t in zip(out.prompt_logprobs[q_len:], tokens[q_len:]))
            losses.append(ExampleLoss(first_index + i, nll, len(tokens) - q_len, len(e["answer"].encode()), q_len))
        return losses

    def close(self) -> None:
        import gc

        del self.llm
        gc.collect()


class HFTaskLoss:
    """The same quantity from one transformers forward pass per batch (sorted by length, left-padded)."""

    name = "hf"

    def __init__(self, source: str | None = None, *, dtype: str = "float32", batch_size: int = 8,
                 model_and_tokenizer: tuple[Any, Any] | None = None) -> None:
        if model_and_tokenizer is None:
            from checkpoints_index.loading import load_checkpoint

            model_and_tokenizer = load_checkpoint(source, dtype=dtype, device=_torch_device())
        self.model, self.tokenizer = model_and_tokenizer
        self.batch_size = max(1, batch_size)
        self.context = getattr(self.model.config, "max_position_embeddings", None)

    def score(self, examples: Sequence[dict], first_index: int = 0) -> list[ExampleLoss]:
        spans = [answer_span(self.tokenizer, e["prompt"], e["answer"]) for e in examples]
        for i, ((full, q_len), e) in enumerate(zip(spans, examples)):
            _check_example(first_index + i, full, q_len, e["answer"], self.context and self.context + 1)
        order = sorted(range(len(examples)), key=lambda i: len(spans[i][0]))
        nll: dict[int, float] = {}
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            for i, value in zip(batch, self._batch_nll([spans[i] for i in batch])):
                nll[i] = value
        return [ExampleLoss(first_index + i, nll[i], len(full) - q_len, len(e["answer"].encode()), q_len)
                for i, ((full, q_len), e) in enumerate(zip(spans, examples))]

    def _batch_nll(self, spans: Sequence[tuple[list[int], int]]) -> list[float]:
        import torch

        width = max(len(full) for full, _ in spans)
        keep = max(len(full) - q_len for full, q_len in spans) + 1  # logits that predict every answer token
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(spans), width), pad, dtype=torch.long)
        mask = torch.zeros((len(spans), width), dtype=torch.long)
        for row, (full, _) in enumerate(spans):
            ids[row, width - len(full):] = torch.tensor(full)
            mask[row, width - len(full):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift the real tokens' positions
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                position_ids=positions.to(device), logits_to_keep=keep).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        values = []
        for row, (full, q_len) in enumerate(spans):
            answer = torch.tensor(full[q_len:], device=device)
            # kept position keep-1 is the last token; answer token j is predicted at kept keep-1-a+j
            predicting = logprobs[row, keep - 1 - len(answer): keep - 1]
            values.append(-float(predicting.gather(-1, answer[:, None]).sum()))
        return values

    def close(self) -> None:
        del self.model


def _torch_device() -> str:
    from core.platform import has_nvidia_gpu

    return "cuda" if has_nvidia_gpu() else "cpu"


def summarize(model: str, task: str, losses: Sequence[ExampleLoss]) -> dict[str, Any]:
    """One `TASKLOSS_COLUMNS` row: means over examples (taskloss-eval's AVG) and the token-weighted bits/token."""
    n = len(losses)
    if n == 0:
        raise UserError(f"{model} / {task}: no examples to summarize")
    total_tokens = sum(x.answer_tokens for x in losses)
    return {"model": model, "task": task, "num_examples": n,
            "bits_per_token": sum(x.bits_per_token for x in losses) / n,
            "bits_per_byte": sum(x.bits_per_byte for x in losses) / n,
            "nll_nats": sum(x.nll_nats for x in losses) / n,
            "answer_tokens": total_tokens / n,
            "answer_bytes": sum(x.answer_bytes for x in losses) / n,
            "bits_per_token_weighted": sum(x.nll_nats for x in losses) / LN2 / total_tokens}


# ---------------------------------------------------------------------------------------------------- the job


def _resolved_backend(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from core.platform import has_nvidia_gpu

    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    if backend["type"] not in ("vllm", "hf"):
        raise UserError(f"backend.type must be vllm or hf; got {backend['type']!r}")
    if backend["dtype"] == "auto" and not has_nvidia_gpu():
        backend["dtype"] = "float32"
    if backend["enforce_eager"] is None and not has_nvidia_gpu():
        backend["enforce_eager"] = True
    return backend


def make_scorer(backend: dict[str, Any], source: str) -> VLLMTaskLoss | HFTaskLoss:
    if backend["type"] == "vllm":
        return VLLMTaskLoss(source, dtype=backend["dtype"], enforce_eager=backend["enforce_eager"],
                            tensor_parallel_size=backend["tensor_parallel_size"],
                            max_model_len=backend["max_model_len"], engine_kwargs=backend["engine_kwargs"])
    return HFTaskLoss(source, dtype="float32" if backend["dtype"] == "auto" else backend["dtype"],
                      batch_size=backend["batch_size"])


def read_examples(path: Path) -> list[ExampleLoss]:
    """The examples a previous run finished; a line cut by a kill is dropped (and rewritten away)."""
    if not path.is_file():
        return []
    done, lines = [], path.read_text().splitlines()
    for line in lines:
        try:
            row = json.loads(line)
            done.append(ExampleLoss(*(row[k] for k in ("index", "nll_nats", "answer_tokens", "answer_bytes",
                                                       "prompt_tokens"))))
        except (ValueError, KeyError, TypeError):
            break
    if len(done) < len(lines):
        atomic_write(path, lambda temp: temp.write_text("".join(json.dumps(x.as_json()) + "\n" for x in done)))
    return done


def _append(path: Path, losses: Sequence[ExampleLoss]) -> None:
    import os

    with path.open("a") as handle:
        handle.write("".join(json.dumps(x.as_json()) + "\n" for x in losses))
        handle.flush()
        os.fsync(handle.fileno())


def score_model(cfg: Any, model: str, task: str, examples: list[dict], out_root: Path) -> dict[str, Any]:
    """One model on the (limited) set, resuming from its examples.jsonl; its summary row."""
    from checkpoints_index.index import resolve
    from checkpoints_index.loading import model_source, weights_version
    from inference.instruments.lm_eval_run import safe_name

    info = resolve(model)
    source = model_source(model)
    backend = _resolved_backend(cfg)
    task_dir = out_root / safe_name(info.name) / safe_name(task)
    task_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(json.dumps(examples, sort_keys=True).encode()).hexdigest()[:16]
    settings = {"model": source, "weights": weights_version(source, None), "task": task, "examples": digest,
                "backend": backend["type"], "dtype": backend["dtype"]}
    meta = task_dir / "settings.json"
    if meta.is_file() and json.loads(meta.read_text()) != settings:
        raise UserError(f"{task_dir} holds examples scored under other settings ({meta}): use another output_dir "
                        f"or delete that folder")
    atomic_write(meta, lambda temp: temp.write_text(json.dumps(settings, indent=2) + "\n"))
    path = task_dir / "examples.jsonl"
    done = read_examples(path)
    wanted = examples[: cfg.limit] if cfg.limit is not None else examples
    if len(done) < len(wanted):
        print(f"{info.name} / {task}: scoring examples {len(done)}..{len(wanted) - 1} ({backend['type']})", flush=True)
        scorer = make_scorer(backend, source)
        try:
            for start in range(len(done), len(wanted), max(1, cfg.chunk_size)):
                chunk = wanted[start:start + max(1, cfg.chunk_size)]
                losses = scorer.score(chunk, first_index=start)
                _append(path, losses)
                done.extend(losses)
        finally:
            scorer.close()
    return summarize(info.name, task, done[: len(wanted)])


def write_taskloss_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    return atomic_write_csv(path, rows, TASKLOSS_COLUMNS)


def run_taskloss(cfg: Any, shard: tuple[int, int] | None = None) -> dict[str, Path]:
    """Every model on the recipe's set; `<output_dir>/taskloss.csv` (one row per model). With `shard=(i, n)`
    only the models of array task i of n (`inference.jobs.shards`), and no table: the unsharded run writes it."""
    from core.config import save_resolved_config
    from inference.jobs.shards import announce, shard_items
    from tasks.taskloss_sets import load_taskloss_set

    out_root = Path(cfg.output_dir)
    save_resolved_config(cfg, out_root)
    task, examples = load_taskloss_set(cfg.dataset, cfg.num_shots, cfg.shots_seed, dict(cfg.data_files) or None)
    models = shard_items(list(cfg.models), shard)
    announce(shard, models, len(cfg.models))
    rows = [score_model(cfg, model, task, examples, out_root) for model in models]
    if shard is not None:
        return {"examples": out_root}
    return {"taskloss": write_taskloss_csv(rows, out_root / "taskloss.csv"), "examples": out_root}
