#!/usr/bin/env bash
# Page faults and kernel time of the GRPO bench's d512 worker (1 warm-up + STEPS timed steps), with the heap kept
# during training (the lab's default on CPU, core.platform.kept_heap) and with glibc's defaults (MOELAB_KEEP_HEAP=0),
# for HF generate and colocated vLLM. Faults and kernel time are the process's own, so they can be read on busy
# cores; wall times cannot.
#   scripts/grpo_heap_faults.sh docs/results/grpo-heap-faults.txt [MODEL_DIR] [STEPS]
set -euo pipefail
out=${1:?usage: scripts/grpo_heap_faults.sh OUT.txt [MODEL_DIR] [STEPS]}
model=${2:-outputs/rehearse/models/d512-E8-k2-L2}
steps=${3:-3}
cd "$(dirname "$0")/.."
[ -d "$model" ] || { echo "no model at $model: make a d512 stand-in first (bench/grpo.py makes one)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
  echo "# provenance: scripts/grpo_heap_faults.sh $* | commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs/results' || echo -dirty) | $(date -u +%Y-%m-%dT%H:%M:%SZ) | $(uname -m), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
  echo "# /usr/bin/time -v .venv/bin/python bench/grpo.py --worker d512:VARIANT --model-path $model --steps $steps"
  for heap in kept glibc-defaults; do
    for variant in hf vllm; do
      keep=1; [ "$heap" = kept ] || keep=0
      MOELAB_KEEP_HEAP=$keep /usr/bin/time -v -o "$tmp/time" .venv/bin/python bench/grpo.py --worker "d512:$variant" \
        --model-path "$model" --steps "$steps" > "$tmp/log" 2>&1 || { tail -20 "$tmp/log" >&2; exit 1; }
      echo
      echo "## heap=$heap variant=$variant"
      grep -E "User time|System time|Elapsed|Maximum resident|Minor|Voluntary context" "$tmp/time" | sed 's/^\t/  /'
    done
  done
} > "$tmp/out"
mv "$tmp/out" "$out"
cat "$out"
