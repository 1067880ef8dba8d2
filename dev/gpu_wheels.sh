#!/usr/bin/env bash
# Wheels for dev/gpu_check.sh, built on a machine where pip reaches PyPI, for a GPU machine that has
# no network but a Python (3.12 here) with CUDA torch, transformers, accelerate, pyarrow, pandas,
# numpy, tokenizers, sympy, psutil, msgpack, einops, ninja and py-cpuinfo already installed (a
# typical "PyTorch image"). It fetches only what such a Python lacks, at the versions of the lab's one stack
# (read from constraints/gpu.txt, so the check runs what the cluster install runs), as binary wheels for
# CPython 3.12 on manylinux x86-64: about 7 MiB, small enough to copy over. vLLM is not among them (its CUDA
# wheel pins torch 2.13.0: about 1 GB with it); dev/gpu_check.sh says when it runs without vLLM.
#
#   dev/gpu_wheels.sh [OUT_DIR=.whl] [PYTHON_VERSION=3.12]
#   then copy the repository with OUT_DIR to the GPU machine and run:  dev/gpu_check.sh .whl
set -euo pipefail
OUT=${1:-.whl}
PYVER=${2:-3.12}
LAB=$(cd "$(dirname "$0")/.." && pwd)
NAMES=(trl omegaconf antlr4-python3-runtime math-verify latex2sympy2_extended datasets dill multiprocess hjson
       pydantic pydantic_core annotated-types typing-inspection)
pinned() {  # NAME==VERSION as constraints/gpu.txt pins it; fails for a name it does not pin
    grep -i -m1 -E "^$1==" "$LAB/constraints/gpu.txt" || { echo "gpu_wheels.sh: constraints/gpu.txt pins no $1" >&2; exit 2; }
}
PACKAGES=()
for name in "${NAMES[@]}"; do PACKAGES+=("$(pinned "$name")"); done
mkdir -p "$OUT"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT" "${PACKAGES[@]}"
# deepspeed is published as an sdist only; its build imports torch, so build it with the lab's Python
# (the wheel is pure Python: py3-none-any).
"${BUILD_PYTHON:-.venv/bin/python}" -m pip wheel --quiet --no-deps --no-build-isolation -w "$OUT" "$(pinned deepspeed)"
du -sh "$OUT"
ls "$OUT"
