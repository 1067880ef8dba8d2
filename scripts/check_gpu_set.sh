#!/usr/bin/env bash
# The GPU constraint set installed and tested on a machine without a GPU (issue #23): a fresh clone of the
# committed HEAD, or a copy of SOURCE_DIR (a working tree not yet committed), gets `make install EXTRA=gpu`
# and `make test` in a directory of its own; the pytest summary goes to docs/results/gpu-set-tests.txt of
# this checkout. Exit status: make install's when it fails, else make test's.
#
#   scripts/check_gpu_set.sh [SOURCE_DIR]
#
# vLLM's CUDA wheel and the CUDA torch install fine without a GPU (~9 GB, from PyPI). What needs a CUDA
# device skips with the reason (tests/conftest.py, vllm_engine_unavailable); everything else runs as on the
# CPU set. pip's find-links are replaced by an empty directory for the install: a torch-X+cpu wheel there
# would match the GPU set's torch==X (scripts/check_gpu_install.py would refuse that install).
# Environment: WORK=DIR keeps the copy and its .venv there (a second run with the same WORK reuses the
# install while pyproject.toml and constraints/gpu.txt are unchanged); PYTEST_ARGS passes on to pytest.
set -euo pipefail
SRC=${1:-}
LAB=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/moelab-gpu-set.XXXXXX)}
DEST=$WORK/lab
RESULT=$LAB/docs/results/gpu-set-tests.txt
mkdir -p "$WORK/no-find-links"

if [ -n "$SRC" ]; then
    [ -f "$SRC/Makefile" ] || { echo "check_gpu_set.sh: $SRC is not a checkout of the lab (no Makefile)" >&2; exit 2; }
    SRC=$(cd "$SRC" && pwd)
    mkdir -p "$DEST"
    # the working tree as it is (tracked or not), without its environment and outputs; DEST's .venv stays
    tar -C "$SRC" --exclude=./.venv --exclude=./outputs --exclude=./.git -cf - . | tar -C "$DEST" -xf -
    commit=$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)
    [ -z "$(git -C "$SRC" status --porcelain 2>/dev/null)" ] || commit="$commit plus uncommitted changes"
    source="a copy of $SRC"
else
    [ -d "$DEST/.git" ] || git clone --quiet "$LAB" "$DEST"
    git -C "$DEST" fetch --quiet "$LAB" HEAD && git -C "$DEST" reset --quiet --hard FETCH_HEAD
    commit=$(git -C "$DEST" rev-parse HEAD)
    source="a clone of $LAB"
fi

echo "== make install EXTRA=gpu in $DEST ($source, $commit)"
(cd "$DEST" && PIP_FIND_LINKS="$WORK/no-find-links" make install EXTRA=gpu)

echo "== make test in $DEST"
LOG=$WORK/pytest.log
set +e
(cd "$DEST" && make test PYTEST_ARGS="-p no:cacheprovider -rfEs ${PYTEST_ARGS:-}") 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e

versions=$("$DEST/.venv/bin/python" -c "import importlib.metadata as m, torch
names = ('vllm', 'torch', 'transformers', 'huggingface_hub', 'trl', 'deepspeed', 'accelerate', 'lm_eval')
print(', '.join(f'{n} {m.version(n)}' for n in names) + f'; torch.version.cuda {torch.version.cuda}; '
      f'CUDA device: {torch.cuda.is_available()}')")
summary=$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$LOG" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
count() { echo "$summary" | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+' || echo 0; }
{
    PYTHONPATH="$LAB" python3 -c 'import sys; from core.provenance import provenance, provenance_line
print(provenance_line(provenance(sys.argv[1:])))' scripts/check_gpu_set.sh "$@"
    echo "# scripts/check_gpu_set.sh: the GPU constraint set (constraints/gpu.txt) installed and tested on a CPU machine"
    echo "command: scripts/check_gpu_set.sh ${1:-}   (make install EXTRA=gpu; make test)"
    echo "source: $source"
    echo "commit: $commit"
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(uname -sm), $(nproc) cores, no GPU"
    echo "installed: $versions"
    echo "make test exit status: $status"
    echo "summary: ${summary:-none (pytest did not finish; see the log)}"
    echo "passed: $(count passed), skipped: $(count skipped), failed: $(count failed), errors: $(count error)"
    echo
    echo "## failures and errors"
    grep -E '^(FAILED|ERROR) ' "$LOG" || echo "none"
    echo
    echo "## skips and their reasons"
    grep -E '^SKIPPED ' "$LOG" || echo "none"
} > "$RESULT"
echo "== wrote $RESULT"
cat "$RESULT"
exit "$status"
