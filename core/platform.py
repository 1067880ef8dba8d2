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
and the heap a CPU training run keeps (`kept_heap`, around `rl.train.train`'s build and training loop).
"""

from __future__ import annotations

import atexit
import contextlib
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

# glibc mallopt parameters (malloc.h) and glibc's defaults, restored after training
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
GLIBC_TRIM_THRESHOLD, GLIBC_MMAP_MAX = 128 * 1024, 65536
KEEP_HEAP_ENV = "MOELAB_KEEP_HEAP"  # "0": leave glibc's malloc as it is


def _malloc_library():
    """The loaded allocator's library (glibc's, or a preloaded one's `mallopt`/`malloc_trim`), or None."""
    import ctypes
    import platform as host

    if not host.libc_ver()[0] == "glibc":
        return None
    try:
        library = ctypes.CDLL(None)
        library.mallopt, library.malloc_trim  # noqa: B018 - both must exist
        return library
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def kept_heap(enabled: bool = True):
    """While training on a CPU-only Linux (glibc) machine, let malloc keep the memory a step frees for
    the next step; glibc's behaviour comes back after (its defaults, and the kept memory returned).

    Why: glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh mapping, unmaps
    it on free, and trims the heap's top, so the kernel zeroes every page of the next step's logits and
    gradients again: a 2-layer d512 GRPO run (vocabulary-sized logits) spent about a third of its CPU time in the
    kernel, faulting pages in (`docs/results/grpo-heap-faults.txt`). With mmap off and no
    trimming, freed blocks stay in the heap and are reused. Costs: resident memory stays at its peak while
    training; in glibc's per-thread arenas a block over 64 MiB is still mapped afresh (the main thread's
    allocations, where the training step runs, are not). Not on a GPU machine (the big tensors live on the
    GPU), not outside glibc, and not with MOELAB_KEEP_HEAP=0 or `enabled=False` (glibc's defaults, e.g. to
    measure them). Yields whether the heap is kept.
    """
    library = None
    if enabled and not has_nvidia_gpu() and os.environ.get(KEEP_HEAP_ENV, "1") != "0":
        library = _malloc_library()
    kept = library is not None and bool(library.mallopt(M_MMAP_MAX, 0)) and bool(library.mallopt(M_TRIM_THRESHOLD, -1))
    try:
        yield kept
    finally:
        if library is not None:  # also after a half-applied setting
            library.mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)
            library.mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD)
            if kept:
                library.malloc_trim(0)
