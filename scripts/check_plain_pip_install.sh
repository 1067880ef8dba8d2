#!/usr/bin/env bash
# Plain-pip install check: `make install` (EXTRA=cpu) in a fresh clone, as on a user's machine with
# only Python >= 3.11 and a plain pip: no pip config files (PIP_CONFIG_FILE=/dev/null turns off every
# one, and with them any configured constraints, find-links and extra indexes), no PIP_* variables,
# a fresh pip cache, packages from PyPI (https://pypi.org/simple, pip's default). A local simple index
# holding only the torch==2.13.0+cpu wheel stands in for PyTorch's CPU index and is passed as the
# Makefile's TORCH_INDEX.
#
#   scripts/check_plain_pip_install.sh [TORCH_WHEEL] [WORK_DIR]
#
# TORCH_WHEEL: default /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl (the wheel
# the PyTorch CPU index serves for CPython 3.11); WORK_DIR (default /tmp/plain-pip-check) is wiped.
# The clone is of this repository's HEAD; Makefile, pyproject.toml and constraints/ are copied over it
# from the working tree, so uncommitted changes to them are what gets checked. Set TORCH_INDEX to
# check against a real index instead (e.g. https://download.pytorch.org/whl/cpu).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WHEEL=${1:-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}
WORK=${2:-/tmp/plain-pip-check}
PYTHON=${PYTHON:-python3}

rm -rf "$WORK"
mkdir -p "$WORK/torch-index/simple/torch"
if [ -z "${TORCH_INDEX:-}" ]; then
    name=$(basename "$WHEEL")
    ln -s "$(realpath "$WHEEL")" "$WORK/torch-index/simple/torch/$name"
    sha=$(sha256sum "$WHEEL" | cut -d' ' -f1)
    href=${name//+/%2B}
    printf '<!DOCTYPE html>\n<html><body>\n<a href="torch/">torch</a>\n</body></html>\n' \
        > "$WORK/torch-index/simple/index.html"
    printf '<!DOCTYPE html>\n<html><body>\n<a href="%s#sha256=%s">%s</a>\n</body></html>\n' \
        "$href" "$sha" "$name" > "$WORK/torch-index/simple/torch/index.html"
    TORCH_INDEX=file://$WORK/torch-index/simple
fi

git clone --quiet "$REPO" "$WORK/freshclone"
cp "$REPO/Makefile" "$REPO/pyproject.toml" "$WORK/freshclone/"
rm -rf "$WORK/freshclone/constraints"
cp -r "$REPO/constraints" "$WORK/freshclone/"

# Every PIP_* variable off, no config file, an empty cache.
unset_pip=()
for v in $(env | grep -o '^PIP_[A-Za-z0-9_]*' || true); do unset_pip+=(-u "$v"); done
plain=(env "${unset_pip[@]}" PIP_CONFIG_FILE=/dev/null PIP_CACHE_DIR="$WORK/pip-cache")

echo "== pip config seen by the install (only this script's cache-dir and config-file=/dev/null):"
"${plain[@]}" "$PYTHON" -m pip config list
echo "== TORCH_INDEX=$TORCH_INDEX"
cd "$WORK/freshclone"
start=$(date +%s)
"${plain[@]}" make install PYTHON="$PYTHON" TORCH_INDEX="$TORCH_INDEX"
echo "== make install: $(( $(date +%s) - start )) s"
.venv/bin/python -c "import torch, vllm, transformers, trl, deepspeed; print('torch', torch.__version__, \
'| vllm', vllm.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__, \
'| deepspeed', deepspeed.__version__)"
# Anything installed that the constraints file does not pin, or at another version:
"${plain[@]}" .venv/bin/python -m pip freeze --exclude-editable | sort > "$WORK/freeze.txt"
grep -v '^#' constraints/cpu.txt | sed '/^$/d' | sort > "$WORK/pins.txt"
echo "== installed but not as pinned in constraints/cpu.txt (expect none):"
comm -23 "$WORK/freeze.txt" "$WORK/pins.txt"
echo "== OK: plain-pip cpu install in $WORK/freshclone"
