#!/usr/bin/env bash
# Developer smoke test for ONE GPU on a machine WITHOUT network access (a cluster with a normal
# `make install EXTRA=gpu` does not need it: README, "On a GPU cluster"). It runs a few GRPO steps of a
# random-init, architecture-exact d512-E8-k2 (16 layers, 320M parameters) under DeepSpeed ZeRO-2 and
# prints the median step time and peak GPU memory: the figures to expect before a real run.
#
#   dev/gpu_check.sh WHEEL_DIR [STEPS]
#
# For a GPU machine without network whose Python already has a CUDA torch but neither trl nor
# deepspeed (e.g. a PyTorch container image: python3 3.12 with torch, transformers, accelerate).
# What it lacks is installed with `pip --no-index --no-deps --target` from WHEEL_DIR into a directory
# put on PYTHONPATH, so torch and the rest of the machine's Python are never touched. Build WHEEL_DIR
# where pip works:
#   dev/gpu_wheels.sh .whl 3.12          # ~7 MiB: trl, deepspeed, omegaconf, math-verify, datasets...
# and copy it to the GPU machine with the repository, then: dev/gpu_check.sh .whl
# Environment: PYTHON (default python3), USE_VLLM=1 to generate with a colocated vLLM (needs vllm in
# that Python), KEEP=1 to keep the installed packages and run directory, CHECK_ON_CPU=1 to rehearse the whole
# script on a CPU machine (2 layers, fp32, DeepSpeed over gloo: it checks the install and the launch,
# not the figures).
set -euo pipefail
WHEELS=${1:?usage: dev/gpu_check.sh WHEEL_DIR [STEPS]}
STEPS=${2:-5}
PY=${PYTHON:-python3}
LAB=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/moelab-gpu-check.XXXXXX)}
SITE=$WORK/site
cd "$LAB"

ON_CPU=${CHECK_ON_CPU:-0}
if [ "$ON_CPU" = 1 ]; then
    LAYERS=${LAYERS:-2} DTYPE=float32 BF16=false ACCEL=configs/deepspeed/zero2_cpu.yaml NPROC=2 MAXLEN=64
    $PY -c "import torch; print('torch', torch.__version__, 'on CPU (rehearsal)')"
else
    LAYERS=${LAYERS:-16} DTYPE=bfloat16 BF16=true ACCEL=configs/deepspeed/zero2.yaml NPROC=1 MAXLEN=256
    $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
fi

echo "== installing trl, deepspeed and what they need from $WHEELS (no network)"
# Exactly the wheels given, into a directory on PYTHONPATH, without resolving: the machine's own
# packages (torch above all) stay as they are, and nothing depends on venv/ensurepip being there.
$PY -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH="$LAB:$SITE${PYTHONPATH:+:$PYTHONPATH}"   # the lab itself runs from the checkout
$PY -c "import torch, transformers, trl, deepspeed, datasets, omegaconf, math_verify, accelerate; \
print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, \
'deepspeed', deepspeed.__version__, 'accelerate', accelerate.__version__)"

echo "== materializing a random-init d512-E8-k2 ($LAYERS layers, $DTYPE)"
$PY -c "from checkpoints_index.loading import materialize_random; \
materialize_random('d512-E8-k2', '$WORK/d512-E8-k2', layers=$LAYERS, dtype='$DTYPE')"

echo "== $STEPS GRPO steps under DeepSpeed ZeRO-2, $NPROC process(es)"
export MOELAB_REGISTRY=$WORK/registry.jsonl
$PY -m moelab.cli grpo configs/grpo/toy.yaml \
    model.name="$WORK/d512-E8-k2" model.dtype="$DTYPE" output_dir="$WORK/run" max_steps="$STEPS" \
    data.dataset=gsm8k data.prompt_style=qa data.max_prompt_length=512 data.limit=512 \
    grpo.num_generations=8 grpo.per_device_train_batch_size=16 grpo.max_completion_length="$MAXLEN" \
    grpo.bf16="$BF16" grpo.learning_rate=1e-6 grpo.lr_scheduler_type=constant grpo.warmup_steps=0 grpo.use_vllm="$( [ "${USE_VLLM:-0}" = 1 ] && echo true || echo false )" \
    eval.datasets=[] checkpoints.save_steps=1000 checkpoints.register=false moe.log_expert_load_steps=1 \
    launch.num_processes="$NPROC" launch.accelerate_config="$ACCEL"

$PY - "$WORK/run" <<'PY'
import json, statistics, sys
from pathlib import Path
run = Path(sys.argv[1])
summary = json.loads((run / "summary.json").read_text())
history = json.loads((run / "log_history.json").read_text())
times = [h["step_time"] for h in history if "step_time" in h]
print(f"GPU check: {summary['step']} GRPO steps of d512-E8-k2 (16 completions per step)")
print(f"  step time: median {statistics.median(times):.2f} s, all {[round(t, 2) for t in times]}")
print(f"  peak GPU memory (torch allocated): {summary.get('peak_gpu_memory_gib')} GiB")
PY
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
