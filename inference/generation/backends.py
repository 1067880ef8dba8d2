"""Generation backends behind one interface: vLLM offline, a vLLM OpenAI-compatible server, transformers.

A sweep hands a backend a list of `GenerationRequest`s, one per (problem, sample index), each with its
own seed, and gets back one `GenerationResult` per request in the same order. Seeding every sample
on its own is what makes the sample store work: any sample can be regenerated alone, and raising N
from 64 to 256 asks only for sample indices 64..255, which come out exactly as in a fresh run.

- `VLLMBackend` puts a whole chunk into ONE `LLM.generate` call, so the engine's continuous batching
  keeps its batch full while short completions finish (the study's loop called `generate` once per
  problem with 64 copies of the prompt). Consecutive sample indices of one prompt are sent as a
  single request with `n=count, seed=first_seed`: vLLM gives its child i the seed `seed + i`
  (`vllm/v1/engine/parallel_sampling.py`), which is exactly the per-sample seed we would have sent
  alone, so grouping changes nothing but the prompt processing cost.
- Prefill once per prompt. vLLM v1 registers a request's full KV blocks in the prefix cache when it
  schedules them (`KVCacheManager.allocate_slots`), so a copy admitted later in the SAME engine step
  already reuses them: the children of one `n=count` request compute the prompt once, and each of
  the others only its last, partial block (measured in `bench/sweep.py`; admitting one request per
  prompt first, or priming the cache with `max_tokens=1`, computed exactly the same tokens). What
  defeated it on CPU was the block size: only whole blocks are cached, and vLLM-CPU's default
  block is 128 tokens, longer than a toy 1-shot prompt. `block_size=None` picks 32 there (the
  smallest its attention accepts); on a GPU vLLM's own choice (16 by default) stays.
- `OpenAIServerBackend` is the client of `vllm serve` on cluster nodes: one request per sample
  (`n=1`, `seed`) through the `openai` client, which retries 408/409/429/5xx, timeouts and refused
  connections with exponential back-off (or the server's Retry-After). Several servers: each prompt
  goes to one of them by a hash of its text, so the server holding its cached prefix serves all of
  its samples, and each server has `concurrency` requests in flight.
- `TransformersBackend` is the fallback where vLLM is unavailable: one `generate` call per sample
  under its own `torch.manual_seed`, stop strings applied, raw-logit log-probabilities.

Every backend records the completion text (stop string excluded, as vLLM does), the number of
generated tokens, the cumulative log-probability of those tokens under the model's raw
distribution (before temperature/top-p, vLLM's default `raw_logprobs`) and the finish reason
(`stop` or `length`).
"""

from __future__ import annotations

import gc
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from core.errors import UserError

BACKEND_NAMES = ["vllm", "server", "hf"]


@dataclass(frozen=True)
class SamplingSettings:
    """What decides the distribution of a completion (part of every sample's content address)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"temperature": float(self.temperature), "top_p": float(self.top_p),
                "max_new_tokens": int(self.max_new_tokens), "stop": list(self.stop)}


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    seed: int
    sampling: SamplingSettings
    key: str = ""  # opaque identifier carried through to the result (the store's content address)


@dataclass
class GenerationResult:
    request: GenerationRequest
    completion: str
    num_tokens: int
    cumulative_logprob: float | None
    finish_reason: str
    prompt_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_logprob(self) -> float | None:
        if self.cumulative_logprob is None or self.num_tokens <= 0:
            return None
        return self.cumulative_logprob / self.num_tokens


class GenerationBackend(Protocol):
    """`generate` returns one result per request, in request order."""

    name: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...

    def close(self) -> None: ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest stop string (vLLM's `include_stop_str_in_output=False`), and whether one occurred."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


# ---------------------------------------------------------------------------------------------------- vLLM offline


def group_consecutive_samples(requests: Sequence[GenerationRequest]) -> list[tuple[int, int]]:
    """(start, count) runs of requests that one vLLM request with `n=count, seed=requests[start].seed` reproduces:
    same prompt and sampling, seeds increasing by one (greedy requests are never grouped: n=1 each)."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(requests) + 1):
        head, prev = requests[start], requests[i - 1]
        if (i < len(requests) and not head.sampling.greedy and requests[i].prompt == head.prompt
                and requests[i].sampling == head.sampling and requests[i].seed == prev.seed + 1):
            continue
        runs.append((start, i - start))
        start = i
    return runs


def cpu_engine_defaults() -> dict[str, Any]:
    """Engine arguments that seeded sampling needs on vLLM-CPU (none elsewhere).

    With chunked prefill, a prompt split across engine steps gets a token sampled and discarded at
    each partial step; vLLM then rewinds that request's generator by its Philox offset, which CPU
    generators do not have (`RuntimeError: CPU Generator does not use offset`, vLLM-CPU 0.32). Without
    chunked prefill every prompt is prefilled in one step and nothing needs rewinding.
    """
    from vllm.platforms import current_platform

    return {"enable_chunked_prefill": False} if current_platform.is_cpu() else {}


# vLLM-CPU's attention takes block sizes that are multiples of 32 (16 fails: "No common block size for 16").
CPU_BLOCK_SIZE = 32


def engine_arguments(*, enforce_eager: bool | None = None, block_size: int | None = None) -> dict[str, Any]:
    """The platform-dependent `vllm.LLM` arguments of the lab's engines, resolved at engine start.

    `enforce_eager=None`: eager on CPU (graph capture there adds ~45 s of start-up for <= 20%), CUDA
    graphs where `torch.cuda.is_available()`. `block_size=None`: `CPU_BLOCK_SIZE` on vLLM-CPU, whose
    own 128 lets no prompt under 129 tokens share a cached block; vLLM's choice elsewhere. An
    explicit value always wins.
    """
    import torch
    from vllm.platforms import current_platform

    args: dict[str, Any] = {"enforce_eager": (not torch.cuda.is_available()) if enforce_eager is None
                            else bool(enforce_eager)}
    if block_size is not None:
        if block_size < 1 or (current_platform.is_cpu() and block_size % CPU_BLOCK_SIZE):
            raise UserError(f"backend.block_size must be a positive multiple of {CPU_BLOCK_SIZE} on vLLM-CPU "
                            f"(its attention's constraint) and positive elsewhere; got {block_size}")
        args["block_size"] = int(block_size)
    elif current_platform.is_cpu():
        args["block_size"] = CPU_BLOCK_SIZE
    args.update(cpu_engine_defaults())
    return args


def engine_counters(llm: Any) -> dict[str, float]:
    """Prefill and scheduling counters of an engine so far, from vLLM's own metrics.

    Needs an engine built with `disable_log_stats=False`. The counters live in a process-wide Prometheus
    registry that each new engine takes over: with several engines in one process only the newest counts.
    `computed_prompt_tokens` = prompt tokens the engine prefilled itself (not from its prefix cache).
    """
    names = {"vllm:prompt_tokens": "prompt_tokens", "vllm:prompt_tokens_cached": "cached_prompt_tokens",
             "vllm:prefix_cache_queries": "prefix_cache_queries", "vllm:prefix_cache_hits": "prefix_cache_hits"}
    counters = dict.fromkeys([*names.values(), "engine_steps", "scheduled_tokens"], 0.0)
    for metric in llm.get_metrics():
        if metric.name in names:
            counters[names[metric.name]] += metric.value
        elif metric.name == "vllm:iteration_tokens_total":  # a histogram: one observation per engine step
            counters["engine_steps"] += metric.count
            counters["scheduled_tokens"] += metric.sum
    counters["computed_prompt_tokens"] = counters["prompt_tokens"] - counters["cached_prompt_tokens"]
    return counters


class VLLMBackend:
    """`vllm.LLM` in-process; tensor/data parallel and any other engine argument pass straight through."""

    name = "vllm"

    def __init__(self, model: str, *, dtype: str = "auto", revision: str | None = None,
                 tensor_parallel_size: int = 1, data_parallel_size: int = 1, max_model_len: int | None = None,
                 max_num_seqs: int | None = None, enable_prefix_caching: bool = True,
                 enforce_eager: bool | None = None, block_size: int | None = None,
                 engine_kwargs: dict[str, Any] | None = None, sampling_kwargs: dict[str, Any] | None = None,
                 llm: Any = None) -> None:
        self.sampling_kwargs = dict(sampling_kwargs or {})  # extra SamplingParams fields for every request
        if llm is not None:  # an engine built elsewhere (tests, benchmarks share one)
            self.llm = llm
            return
        from vllm import LLM

        kwargs: dict[str, Any] = dict(model=model, dtype=dtype, revision=revision,
                                      tensor_parallel_size=tensor_parallel_size,
                                      enable_prefix_caching=enable_prefix_caching)
        if data_parallel_size > 1:
            kwargs["data_parallel_size"] = data_parallel_size
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if max_num_seqs:
            kwargs["max_num_seqs"] = max_num_seqs
        kwargs.update(engine_arguments(enforce_eager=enforce_eager, block_size=block_size))
        kwargs.update(engine_kwargs or {})
        self.llm = LLM(**kwargs)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        from vllm import SamplingParams

        runs = group_consecutive_samples(requests)
        params = []
        for start, count in runs:
            s = requests[start].sampling
            params.append(SamplingParams(
                n=count, seed=None if s.greedy else requests[start].seed, temperature=s.temperature,
                top_p=1.0 if s.greedy else s.top_p, max_tokens=s.max_new_tokens, stop=list(s.stop) or None,
                # logprobs=0: the sampled token's only, for cumulative_logprob; flat: far less per-token GC
                logprobs=0, flat_logprobs=True, **self.sampling_kwargs))
        outputs = self.llm.generate([requests[start].prompt for start, _ in runs], params, use_tqdm=False)
        results: list[GenerationResult] = []
        for (start, count), output in zip(runs, outputs):
            completions = sorted(output.outputs, key=lambda c: c.index)
            if len(completions) != count:
                raise RuntimeError(f"vLLM returned {len(completions)} completions for a request with n={count}")
            for offset, completion in enumerate(completions):
                results.append(GenerationResult(
                    request=requests[start + offset], completion=completion.text,
                    num_tokens=len(completion.token_ids), cumulative_logprob=completion.cumulative_logprob,
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                    prompt_tokens=len(output.prompt_token_ids or [])))
        return results

    def close(self) -> None:
        """Free the engine before the next one starts (a sweep builds one per model).

        Dropping the last reference runs vLLM's own shutdown, which frees the KV cache and weights and
        collects garbage twice; one more full collection here freed no memory and cost 0.5-1.5 s per
        model on 2 cores (`bench/sweep_breakdown.py`). It still runs when the engine outlives the
        reference dropped here (held elsewhere, or in a reference cycle).
        """
        import weakref

        engine = weakref.ref(self.llm)
        del self.llm
        if engine() is not None:
            gc.collect()


# ---------------------------------------------------------------------------------------------------- vLLM server


class OpenAIServerBackend:
    """Client of OpenAI-compatible `/v1/completions` endpoints (`vllm serve MODEL` per node), `concurrency` in
    flight per server; `base_urls` is one URL or a list (each prompt always goes to the same server)."""

    name = "server"

    def __init__(self, base_urls: str | Sequence[str], model: str, *, concurrency: int = 64,
                 timeout_s: float = 600.0, retries: int = 5, api_key: str | None = None) -> None:
        import openai

        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise UserError("backend.server_urls is empty: list at least one `vllm serve` URL")
        self.urls = [u.rstrip("/") + ("" if u.rstrip("/").endswith("/v1") else "/v1") for u in urls]
        self.model = model
        self.concurrency = max(1, concurrency)
        self.retries = retries
        # vLLM accepts any key unless started with --api-key; the client refuses to start without one
        self.clients = [openai.OpenAI(base_url=url, api_key=api_key or "EMPTY", max_retries=retries,
                                      timeout=timeout_s) for url in self.urls]
        self.slots = [threading.BoundedSemaphore(self.concurrency) for _ in self.urls]

    def server_of(self, prompt: str) -> int:
        """The server a prompt's samples go to: a stable hash, so its prefix is cached on one server only."""
        return int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % len(self.urls)

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        s = request.sampling
        body: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "n": 1, "max_tokens": s.max_new_tokens,
                                "temperature": s.temperature, "top_p": 1.0 if s.greedy else s.top_p, "logprobs": 0}
        if not s.greedy:
            body["seed"] = request.seed
        if s.stop:
            body["stop"] = list(s.stop)
        return body

    def _one(self, request: GenerationRequest) -> GenerationResult:
        import openai

        server = self.server_of(request.prompt)
        url = self.urls[server]
        try:
            with self.slots[server]:
                response = self.clients[server].completions.create(**self._body(request))
        except openai.APIStatusError as err:  # a refusal (4xx), or 408/409/429/5xx still there after the retries
            retried = f" (after {self.retries} retries)" if err.status_code in (408, 409, 429) or \
                err.status_code >= 500 else ""
            raise UserError(f"server {url} answered HTTP {err.status_code}{retried}: "
                            f"{err.response.text[:300]}") from None
        except openai.APIConnectionError as err:  # refused connections and timeouts, after the retries
            raise UserError(f"cannot reach the completion server at {url} ({err.__cause__ or err}, {self.retries} "
                            f"retries); is `vllm serve` running there? Set backend.server_urls") from None
        choice = response.choices[0]
        token_logprobs = [lp for lp in ((choice.logprobs and choice.logprobs.token_logprobs) or []) if lp is not None]
        usage = response.usage
        num_tokens = usage.completion_tokens if usage else len(token_logprobs)
        return GenerationResult(
            request=request, completion=choice.text or "", num_tokens=int(num_tokens),
            cumulative_logprob=float(sum(token_logprobs)) if token_logprobs else None,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            prompt_tokens=usage.prompt_tokens if usage else None)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        with ThreadPoolExecutor(max_workers=self.concurrency * len(self.urls)) as pool:
            return list(pool.map(self._one, requests))

    def close(self) -> None:
        for client in self.clients:
            client.close()


# ---------------------------------------------------------------------------------------------------- transformers


class TransformersBackend:
    """transformers `generate`, one sample at a time under its own seed (slow, but exact and dependency-light)."""

    name = "hf"

    def __init__(self, model: str, *, dtype: str = "float32", revision: str | None = None,
                 model_and_tokenizer: tuple[Any, Any] | None = None) -> None:
        if model_and_tokenizer is None:
            from checkpoints_index.loading import load_checkpoint

            model_and_tokenizer = load_checkpoint(model, dtype=dtype, revision=revision)
        self.model, self.tokenizer = model_and_tokenizer

    def _one(self, request: GenerationRequest) -> GenerationResult:
        import torch

        s = request.sampling
        inputs = self.tokenizer(request.prompt, return_tensors="pt", add_special_tokens=True)
        prompt_len = inputs["input_ids"].shape[1]
        # top_k=0: transformers would otherwise apply its default top-k of 50, which vLLM does not
        sampling = {} if s.greedy else {"temperature": s.temperature, "top_p": s.top_p, "top_k": 0}
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(request.seed)
            out = self.model.generate(
                **inputs, max_new_tokens=s.max_new_tokens, do_sample=not s.greedy, **sampling,
                stop_strings=list(s.stop) or None, tokenizer=self.tokenizer, output_logits=True,
                return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id)
        tokens = out.sequences[0, prompt_len:]
        logits = torch.stack(out.logits, dim=1)[0, : len(tokens)].float()
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
        eos = self.tokenizer.eos_token_id
        ended_by_eos = eos is not None and len(tokens) > 0 and int(tokens[-1]) == eos
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        text, hit_stop = truncate_at_stop(text, s.stop)
        finished = ended_by_eos or hit_stop or len(tokens) < s.max_new_tokens
        return GenerationResult(request=request, completion=text, num_tokens=int(len(tokens)),
                                cumulative_logprob=float(logprobs.sum()), prompt_tokens=int(prompt_len),
                                finish_reason="stop" if finished else "length")

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return [self._one(r) for r in requests]

    def close(self) -> None:
        del self.model


def make_backend(kind: str, model: str, **options: Any) -> GenerationBackend:
    """Build a backend by name (`vllm`, `server`, `hf`); `options` are its keyword arguments."""
    if kind == "vllm":
        return VLLMBackend(model, **options)
    if kind == "server":
        return OpenAIServerBackend(model=model, **options)
    if kind == "hf":
        return TransformersBackend(model, **options)
    raise UserError(f"backend must be one of {', '.join(BACKEND_NAMES)}; got {kind!r}")

