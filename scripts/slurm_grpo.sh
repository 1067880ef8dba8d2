#!/usr/bin/env bash
# GRPO across nodes with SLURM: one `moelab grpo` per node, each launching its 8 GPU processes through
# `accelerate launch` (rl.launch); node 0 is the rendezvous host.
#
#   sbatch --nodes=2 scripts/slurm_grpo.sh configs/grpo/paper_d2048.yaml [key=value ...]
#
# vLLM server mode (models too large to colocate, e.g. d2048-E128, 52B parameters): give vLLM its own
# node(s) and train on the others:
#   sbatch --nodes=3 --export=ALL,VLLM_SERVER_NODES=1 scripts/slurm_grpo.sh configs/grpo/paper_d2048.yaml \
#       grpo.vllm_mode=server
# The first node then runs `trl vllm-serve --model <checkpoint> --tensor-parallel-size 8` and the
# training nodes point grpo.vllm_server_host at it. Weights are pushed to the server after every
# update with Mixtral's per-expert names (rl.weight_sync).
#SBATCH --job-name=moelab-grpo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
RECIPE=${1:?usage: sbatch scripts/slurm_grpo.sh RECIPE.yaml [key=value ...]}
shift
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
mkdir -p logs
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
PORT=${PORT:-29512}
VLLM_SERVER_NODES=${VLLM_SERVER_NODES:-0}
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
EXTRA=()
if [ "$VLLM_SERVER_NODES" -gt 0 ]; then
  SERVER=${NODES[0]}
  MODEL=$(.venv/bin/python -c "import sys; from core.config import load_config; from checkpoints_index.loading import model_source; \
print(model_source(load_config(sys.argv[1], sys.argv[2:]).model.name))" "$RECIPE" "$@")
  srun --nodes=1 --ntasks=1 -w "$SERVER" .venv/bin/trl vllm-serve --model "$MODEL" \
      --tensor-parallel-size "$GPUS_PER_NODE" --host 0.0.0.0 --port 8000 &
  NODES=("${NODES[@]:1}")
  EXTRA+=(grpo.vllm_server_host="$SERVER")
fi
NUM_NODES=${#NODES[@]}
HEAD=${NODES[0]}
for RANK in $(seq 0 $((NUM_NODES - 1))); do
  srun --nodes=1 --ntasks=1 -w "${NODES[$RANK]}" .venv/bin/moelab grpo "$RECIPE" "$@" "${EXTRA[@]}" \
      launch.num_processes="$GPUS_PER_NODE" launch.num_machines="$NUM_NODES" launch.machine_rank="$RANK" \
      launch.main_process_ip="$HEAD" launch.main_process_port="$PORT" &
done
wait
