"""A recording stand-in for the engine behind lm-eval's `vllm` and `hf` models, for request-level checks.

Why: to see what lm-eval sends an engine (prompt token ids, sampling parameters) and which request each came
from, with the harness's own model classes doing all the tokenizing, truncating and batching as in a real
run, on any lm-eval version: the 1044db9 and 82a9936 harnesses (environments without vLLM, transformers 4.47 /
4.52) and the lab's 0.4.13 (vLLM's CPU build, transformers 5). So this module imports nothing of the lab's.

- vLLM: `LLM` and `SamplingParams` in lm-eval's module are replaced; generation answers "#<n>" and scoring
  gives log p(continuation) = -(n+1), n the engine call, so each request is tied to the call it became.
- HF: the two methods that call transformers (`_model_generate`, `_model_call`) are replaced; generation
  answers "#<n>" too, a scoring call is found by its input (context + continuation less the last id). With
  `Recorder(hf_generate=True)` the version's own `_model_generate` runs, and what it hands transformers'
  `generate` is recorded instead.
- `write_standin`: a toy member whose tokenizer adds a BOS by default, as llm-jp-3's does, so a BOS shows
  wherever one is sent. Used by dev/harness_requests.py and tests/test_harness_requests.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
TOY_MEMBER = REPO / "checkpoints_index" / "toy" / "models" / "toy-d64-E8-k2"
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


def write_standin(out_dir: str | Path) -> Path:
    """A toy member whose tokenizer adds a BOS by default (llm-jp-3 does; the toy one does not), loadable by
    transformers 4.47 (the harness side) and 5.x (the lab side) alike."""
    import shutil

    from tokenizers import Tokenizer, processors

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copyfile(TOY_MEMBER / name, out / name)
    tokenizer = Tokenizer.from_file(str(TOY_MEMBER / "tokenizer.json"))
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                             special_tokens=[(BOS, bos_id)])
    tokenizer.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
              "add_bos_token": True, "add_eos_token": False, "model_max_length": 4096}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


class RecordingSamplingParams:
    """Keeps the keyword arguments lm-eval gives vLLM's SamplingParams, exactly as given."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class Recorder:
    """What one side sends to the engine (prompt ids, sampling parameters) and the request each came from."""

    def __init__(self, shots: Callable[[str], list[str]] | None = None, hf_generate: bool = False) -> None:
        self.shots = shots or first_lines  # a context -> its demonstrations, for the record (a summary)
        # HF: False records the arguments of lm-eval's `_model_generate`; True runs the version's own
        # `_model_generate` and records what it gives transformers' `generate` (the engine boundary), keeping
        # `_model_generate`'s arguments beside them (`hf_model_generate_kwargs`, not compared by `compare`)
        self.hf_generate = hf_generate
        self.calls: list[dict[str, Any]] = []  # one per prompt the engine got
        self.pairs: dict[tuple[str, str], tuple[list[int], list[int]]] = {}  # (context, continuation) -> ids
        self.requests: list[dict[str, Any]] = []

    def _call(self, ids: list[int], sampling: dict[str, Any], **extra: Any) -> int:
        self.calls.append({"ids": [int(t) for t in ids], "sampling": sampling, **extra})
        return len(self.calls) - 1

    def llm_class(self) -> type:
        """vLLM's `LLM` as a recorder: generation answers "#<n>", scoring gives log p(continuation) = -(n+1)."""
        recorder = self

        class RecordingLLM:
            def __init__(self, **engine_args: Any) -> None:
                self.llm_engine = types.SimpleNamespace(model_config=None)

            def generate(self, prompts: Any = None, sampling_params: Any = None, prompt_token_ids: Any = None,
                         **_: Any) -> list[Any]:
                ids = prompt_token_ids if prompt_token_ids is not None else [p["prompt_token_ids"] for p in prompts]
                params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(ids)
                outputs = []
                for tokens, param in zip(ids, params):
                    n = recorder._call(tokens, dict(param.kwargs))
                    logprobs = [None] + [{t: 0.0} for t in tokens[1:-1]] + [{tokens[-1]: -(n + 1.0)}]
                    outputs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"#{n}")],
                                                         prompt_logprobs=logprobs[:len(tokens)]))
                return outputs

        return RecordingLLM

    @contextlib.contextmanager
    def attached(self, module: Any) -> Iterator["Recorder"]:
        """The recorder inside an lm-eval model module (`vllm_causallms` or `huggingface`) for the duration;
        everything is restored after. vLLM: `LLM` and `SamplingParams` replaced. HF: the two methods that call
        transformers (`_model_generate`, `_model_call`) replaced; the model is loaded but never run."""
        hf = hasattr(module, "HFLM")
        cls = module.HFLM if hf else module.VLLM
        names = ["generate_until", "loglikelihood", "_loglikelihood_tokens"] + (
            ["_model_generate", "_model_call"] if hf else [])
        methods = {name: cls.__dict__.get(name) for name in names}
        saved = {name: getattr(module, name) for name in ("LLM", "SamplingParams", "resolve_hf_chat_template")
                 if hasattr(module, name) and not hf}
        originals = {name: getattr(cls, name) for name in names}
        recorder = self

        def generate_until(lm: Any, requests: list, disable_tqdm: bool = False) -> list[str]:
            texts = originals["generate_until"](lm, requests, disable_tqdm=disable_tqdm)
            for request, text in zip(requests, texts):
                recorder._add(request, int(text[1:]))
            return texts

        def loglikelihood(lm: Any, requests: list, disable_tqdm: bool = False) -> list:
            answers = originals["loglikelihood"](lm, requests, disable_tqdm=disable_tqdm)
            for request, (logprob, _) in zip(requests, answers):
                recorder._add(request, recorder._scoring_call(request) if hf else int(round(-logprob)) - 1)
            return answers

        def loglikelihood_tokens(lm: Any, requests: list, disable_tqdm: bool = False, **kw: Any) -> list:
            for key, context_ids, continuation_ids in requests:
                recorder.pairs[tuple(key)] = (list(context_ids), list(continuation_ids))
            return originals["_loglikelihood_tokens"](lm, requests, disable_tqdm=disable_tqdm, **kw)

        def model_generate(lm: Any, context: Any, max_length: int, stop: list[str], **kwargs: Any) -> Any:
            import torch

            lm_kwargs = {k: v for k, v in kwargs.items() if k != "attention_mask"}

            def generate(input_ids: Any, attention_mask: Any, max_length: int, stopping_criteria: Any = None,
                         **rest: Any) -> Any:
                sampling = {"max_new_tokens": max_length - input_ids.shape[1], "stop": list(stop), **rest}
                extra = {"lm_kwargs": lm_kwargs} if recorder.hf_generate else {}
                rows = []
                for row, row_mask in zip(input_ids.tolist(), attention_mask.tolist()):
                    n = recorder._call([t for t, m in zip(row, row_mask) if m], sampling, **extra)
                    rows.append(row + lm.tokenizer.encode(f"#{n}", add_special_tokens=False))
                width = max(map(len, rows))
                return torch.tensor([r + [lm.tokenizer.pad_token_id] * (width - len(r)) for r in rows])

            if not recorder.hf_generate:
                return generate(context, max_length=max_length, **kwargs)
            model = lm.model
            model.generate = generate  # the instance's, over transformers' method, for this call only
            try:
                return originals["_model_generate"](lm, context, max_length, stop, **kwargs)
            finally:
                del model.generate

        def model_call(lm: Any, inps: Any, attn_mask: Any = None, labels: Any = None) -> Any:
            import torch

            for row in inps.tolist():
                recorder._call(row, {})
            return torch.zeros(*inps.shape, lm.model.config.vocab_size)

        wrappers = {"generate_until": generate_until, "loglikelihood": loglikelihood,
                    "_loglikelihood_tokens": loglikelihood_tokens, "_model_generate": model_generate,
                    "_model_call": model_call}
        for name in names:
            setattr(cls, name, wrappers[name])
        if not hf:
            module.LLM, module.SamplingParams = self.llm_class(), RecordingSamplingParams
            if "resolve_hf_chat_template" in saved:
                module.resolve_hf_chat_template = lambda **_: None  # needs a real engine's config; no chat here
        try:
            yield self
        finally:
            for name, value in saved.items():
                setattr(module, name, value)
            for name, method in methods.items():
                if method is None:
                    delattr(cls, name)
                else:
                    setattr(cls, name, method)

    def _scoring_call(self, request: Any) -> int:
        """The HF forward pass of a log-likelihood request: its input is context + continuation less the last id."""
        context_ids, continuation_ids = self.pairs[tuple(request.args)]
        wanted = (context_ids + continuation_ids)[:-1]
        (call,) = [i for i, c in enumerate(self.calls) if c["ids"] == wanted]
        return call

    def _add(self, request: Any, call: int) -> None:
        engine = self.calls[call]
        record: dict[str, Any] = {"task": request.task_name, "doc_id": request.doc_id,
                                  "request": request.request_type, "context": request.args[0]}
        if request.request_type == "generate_until":
            record["gen_kwargs"] = json.loads(json.dumps(request.args[1], default=str))
        else:
            record["continuation"] = request.args[1]
        record["shots"] = self.shots(request.args[0])
        record["engine"] = {"prompt_ids": ids_summary(engine["ids"]),
                            "sampling": json.loads(json.dumps(engine["sampling"], default=str))}
        if "lm_kwargs" in engine:
            record["hf_model_generate_kwargs"] = json.loads(json.dumps(engine["lm_kwargs"], default=str))
        if request.request_type == "loglikelihood":
            context_ids, continuation_ids = self.pairs[tuple(request.args)]
            record["engine"]["context_len"] = len(context_ids)
            record["engine"]["scored_ids"] = continuation_ids
        self.requests.append(record)

    def sorted_requests(self) -> list[dict[str, Any]]:
        return sorted(self.requests, key=request_key)


def first_lines(context: str) -> list[str]:
    """The demonstrations of a `\n\n`-delimited few-shot context: the first line (60 characters) of each block
    but the last (the document's own)."""
    return [block.splitlines()[0][:60] for block in context.split("\n\n")[:-1]]


def ids_summary(ids: list[int]) -> dict[str, Any]:
    """Token ids as their count, first ids (where a BOS shows) and a hash of the whole list."""
    return {"n": len(ids), "head": ids[:6], "sha256": hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()}


def request_key(record: dict[str, Any]) -> tuple:
    return record["task"], record["doc_id"], record["request"], record.get("continuation", "")


def install_vllm_stub(version: str | None = None) -> None:
    """Modules named `ray` and `vllm` for the `vllm_causallms` import of 1044db9 / 82a9936, where no vLLM is
    installed; `get_tokenizer` is `AutoTokenizer.from_pretrained`, as vLLM's is (its cache wrapper changes no
    ids). `version`: also a `vllm` distribution of that version, for code that asks `importlib.metadata`
    (82a9936 picks its chat-template code by vLLM's version)."""
    import importlib.machinery
    import tempfile

    from transformers import AutoTokenizer

    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    def get_tokenizer(name: str, tokenizer_mode: str = "auto", trust_remote_code: bool = False,
                      revision: str | None = None, **kwargs: Any) -> Any:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code, revision=revision,
                                             use_fast=tokenizer_mode != "slow", **kwargs)

    module("ray")
    module("vllm", LLM=None, SamplingParams=RecordingSamplingParams)
    module("vllm.lora")
    module("vllm.lora.request", LoRARequest=None)
    module("vllm.transformers_utils")
    module("vllm.transformers_utils.tokenizer", get_tokenizer=get_tokenizer)
    module("vllm.utils", get_open_port=lambda: 0)
    module("vllm.entrypoints")
    module("vllm.entrypoints.chat_utils", resolve_hf_chat_template=lambda **_: None)
    if version:
        site = Path(tempfile.mkdtemp(prefix="vllm-stub-"))
        info = site / f"vllm-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
        sys.path.append(str(site))


FIELDS = ("context", "gen_kwargs", "continuation", "shots", "engine")


def compare(reference: list[dict[str, Any]], lab: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every difference between two request lists: a request on one side only, or a field that differs."""
    ours = {request_key(r): r for r in lab}
    theirs = {request_key(r): r for r in reference}
    differences = [{"request": list(k), "field": "missing in moelab eval"} for k in theirs if k not in ours]
    differences += [{"request": list(k), "field": "only in moelab eval"} for k in ours if k not in theirs]
    for key in [k for k in theirs if k in ours]:
        for field in FIELDS:
            a, b = theirs[key].get(field), ours[key].get(field)
            if field == "engine" and a and b:
                for sub in sorted(set(a) | set(b)):
                    if a.get(sub) != b.get(sub):
                        differences.append({"request": list(key), "field": f"engine.{sub}", "harness": a.get(sub),
                                            "moelab": b.get(sub)})
            elif a != b:
                differences.append({"request": list(key), "field": field, "harness": a, "moelab": b})
    return differences
