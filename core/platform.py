"""Environment defaults that make vLLM usable on a CPU-only machine (README, "Platform notes").

Set before vLLM is imported, and inherited by every process the lab starts (accelerate workers):
- `VLLM_ENABLE_V1_MULTIPROCESSING=0`: the engine runs in-process: it starts several times faster
  (README.md, "Platform notes"), and the GRPO weight sync needs the engine's model in the training
  process;
- `VLLM_CPU_KVCACHE_SPACE=1` (GiB): otherwise vLLM-CPU reserves `gpu_memory_utilization` (0.92) of
  the NUMA node's RAM and refuses to start when other processes hold some of it;
- `VLLM_CPU_OMP_THREADS_BIND=all`: use every core (the default pins the worker to one).
Only defaults: a value the user exported wins. Nothing is changed on a machine with an NVIDIA GPU.

Also the exit every `moelab` command takes (`skip_heap_teardown_at_exit`, called by `moelab.cli.main`).
"""

from __future__ import annotations

import atexit
import gc
import os
from pathlib import Path

CPU_VLLM_DEFAULTS = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "all",
    "TOKENIZERS_PARALLELISM": "false",
}


def has_nvidia_gpu() -> bool:
    """Cheap (no torch import): the NVIDIA driver's control device exists."""
    return Path("/dev/nvidiactl").exists()


def prepare_vllm_environment() -> None:
    if has_nvidia_gpu():
        return
    for key, value in CPU_VLLM_DEFAULTS.items():
        os.environ.setdefault(key, value)


def skip_heap_teardown_at_exit() -> None:
    """Let the process exit without freeing its heap object by object (once per process).

    At exit CPython clears every module and collects what that frees: with vLLM, torch and
    transformers imported that is ~800,000 objects and 3-5 s of one core on a 2-core machine, a
    tenth of a toy sweep (`bench/sweep_breakdown.py`), for memory the OS takes back anyway. A
    heap frozen at exit (`gc.freeze`, as an exit handler) is left alone by the collector; every exit
    handler still runs and the standard streams are still flushed. Files are closed by the code that
    writes them (`core.files.atomic_write`), never left to the collector.
    """
    global _EXIT_FREEZE_REGISTERED
    if not _EXIT_FREEZE_REGISTERED:
        atexit.register(gc.freeze)
        _EXIT_FREEZE_REGISTERED = True


_EXIT_FREEZE_REGISTERED = False
