"""Shared test settings: vLLM-CPU environment, no network, and the expensive shared objects.

vLLM on CPU starts in ~5 s instead of ~36 s with the engine in-process
(VLLM_ENABLE_V1_MULTIPROCESSING=0); a 1 GiB KV cache avoids a start-up failure when
`gpu_memory_utilization` exceeds free RAM (see README, platform notes).
"""

import os

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "all")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
