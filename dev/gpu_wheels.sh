#!/usr/bin/env bash
# Wheels for dev/gpu_check.sh, built on a machine where pip reaches PyPI, for a GPU machine that has
# no network but a Python (3.12 here) with CUDA torch, transformers, accelerate, pyarrow, pandas,
# numpy, tokenizers, sympy, psutil, msgpack, einops, ninja and py-cpuinfo already installed (a
# typical "PyTorch image"). It fetches only what such a Python lacks, at the versions the lab's .venv
# runs, as binary wheels for CPython 3.12 on manylinux x86-64: about 7 MiB, small enough to copy over.
#
#   dev/gpu_wheels.sh [OUT_DIR=.whl] [PYTHON_VERSION=3.12]
#   then copy the repository with OUT_DIR to the GPU machine and run:  dev/gpu_check.sh .whl
set -euo pipefail
OUT=${1:-.whl}
PYVER=${2:-3.12}
PACKAGES=(
    trl==1.16.0 omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 math-verify==0.9.0
    latex2sympy2_extended==1.11.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 hjson==3.1.0
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection
)
mkdir -p "$OUT"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT" "${PACKAGES[@]}"
# deepspeed is published as an sdist only; its build imports torch, so build it with the lab's Python
# (the wheel is pure Python: py3-none-any).
"${BUILD_PYTHON:-.venv/bin/python}" -m pip wheel --quiet --no-deps --no-build-isolation -w "$OUT" deepspeed==0.19.8
du -sh "$OUT"
ls "$OUT"
