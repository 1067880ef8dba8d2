#!/usr/bin/env bash
# GPU check: a few GRPO steps of a random-init, architecture-exact d512-E8-k2 (16 layers, 320M
# parameters) under DeepSpeed ZeRO-2 on ONE GPU; prints the median step time and peak GPU memory.
#
#   scripts/gpu_check.sh WHEEL_DIR [STEPS]
#
# For a GPU machine without network whose Python already has a CUDA torch but neither trl nor
# deepspeed: everything else is installed with `pip --no-index` from WHEEL_DIR, into a venv that
# sees the system torch (--system-site-packages), so torch is never replaced. Build WHEEL_DIR where
# there is network, with the same Python version:
#   pip download -d wheels "trl>=1.16,<1.17" "transformers>=5.0,<5.20" "accelerate>=1.10" omegaconf pyyaml \
#       pyarrow datasets tokenizers "math-verify[antlr4_13_2]==0.9.0" sympy matplotlib tqdm ninja hjson einops \
#       msgpack py-cpuinfo pydantic psutil
#   pip wheel --no-deps --no-build-isolation -w wheels "deepspeed==0.19.8"   # deepspeed ships an sdist only
# (`pip download` also fetches a torch wheel; it is never installed: the system torch already satisfies it.)
# Environment: PYTHON (default python3), USE_VLLM=1 to generate with a colocated vLLM (needs vllm in
# the system Python), KEEP=1 to keep the venv and run directory.
set -euo pipefail
WHEELS=${1:?usage: scripts/gpu_check.sh WHEEL_DIR [STEPS]}
STEPS=${2:-5}
PY=${PYTHON:-python3}
LAB=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/moelab-gpu-check.XXXXXX)}
VENV=$WORK/venv
cd "$LAB"

$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"

echo "== installing trl, deepspeed and the lab from $WHEELS (no network)"
$PY -m venv --system-site-packages "$VENV"
# Only what the system Python lacks; the system torch satisfies every `torch` requirement.
"$VENV/bin/pip" install --quiet --no-index --find-links "$WHEELS" --no-build-isolation \
    "trl>=1.16,<1.17" "deepspeed>=0.19" "transformers>=5.0,<5.20" "accelerate>=1.10" omegaconf pyyaml \
    pyarrow datasets tokenizers "math-verify[antlr4_13_2]==0.9.0" sympy tqdm
export PYTHONPATH="$LAB${PYTHONPATH:+:$PYTHONPATH}"   # the lab itself runs from the checkout
"$VENV/bin/python" -c "import torch, trl, deepspeed; print('trl', trl.__version__, 'deepspeed', deepspeed.__version__, 'torch', torch.__version__)"

echo "== materializing a random-init d512-E8-k2 (bf16)"
"$VENV/bin/python" -c "from checkpoints_index.loading import materialize_random; \
materialize_random('d512-E8-k2', '$WORK/d512-E8-k2', dtype='bfloat16')"

echo "== $STEPS GRPO steps under DeepSpeed ZeRO-2, 1 GPU"
export MOELAB_REGISTRY=$WORK/registry.jsonl
"$VENV/bin/python" -m moelab.cli grpo configs/grpo/toy.yaml \
    model.name="$WORK/d512-E8-k2" model.dtype=bfloat16 output_dir="$WORK/run" max_steps="$STEPS" \
    data.dataset=gsm8k data.prompt_style=qa data.max_prompt_length=512 data.limit=512 \
    grpo.num_generations=8 grpo.per_device_train_batch_size=16 grpo.max_completion_length=256 \
    grpo.bf16=true grpo.learning_rate=1e-6 grpo.use_vllm="$( [ "${USE_VLLM:-0}" = 1 ] && echo true || echo false )" \
    eval.datasets=[] checkpoints.save_steps=1000 checkpoints.register=false moe.log_expert_load_steps=1 \
    launch.num_processes=1 launch.accelerate_config=configs/deepspeed/zero2.yaml

"$VENV/bin/python" - "$WORK/run" <<'PY'
import json, statistics, sys
from pathlib import Path
run = Path(sys.argv[1])
summary = json.loads((run / "summary.json").read_text())
history = json.loads((run / "log_history.json").read_text())
times = [h["step_time"] for h in history if "step_time" in h]
print(f"GPU check: {summary['step']} GRPO steps of d512-E8-k2 (16 completions x <=256 tokens per step)")
print(f"  step time: median {statistics.median(times):.2f} s, all {[round(t, 2) for t in times]}")
print(f"  peak GPU memory (torch allocated): {summary.get('peak_gpu_memory_gib')} GiB")
PY
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
