"""CPU vLLM defaults: set when missing, never over a user's value, untouched on GPU machines."""

import core.platform as platform


def test_cpu_defaults_fill_only_missing_values(monkeypatch):
    monkeypatch.setattr(platform, "has_nvidia_gpu", lambda: False)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    platform.prepare_vllm_environment()
    assert platform.os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert platform.os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"


def test_gpu_machines_are_left_alone(monkeypatch):
    monkeypatch.setattr(platform, "has_nvidia_gpu", lambda: True)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    platform.prepare_vllm_environment()
    assert "VLLM_CPU_KVCACHE_SPACE" not in platform.os.environ
