#!/usr/bin/env bash
# GRPO across nodes with SLURM, after open-r1's slurm/train.slurm. Submit from the repository root:
#
#   sbatch --nodes=2 scripts/slurm_grpo.sh configs/grpo/paper_d1024.yaml [key=value ...]
#   sbatch --nodes=3 scripts/slurm_grpo.sh configs/grpo/paper_d2048.yaml   # vllm_mode: server
#
# - Training: ONE `srun` over all training nodes (one task per node, --kill-on-bad-exit=1: a task that
#   dies takes the others down instead of leaving them blocked in a collective). Each task runs
#   `moelab grpo RECIPE ... launch.machine_rank=$SLURM_PROCID`, which starts GPUS_PER_NODE processes
#   through `accelerate launch` (rl.launch); the first training node is the rendezvous host.
# - vLLM server: when the recipe says `grpo.use_vllm: true, grpo.vllm_mode: server`, the LAST node of
#   the allocation runs `vllm serve` for the recipe's model (revision, dtype and max length from the
#   recipe: rl/cluster.py), trainers start only once its /health answers (SERVER_TIMEOUT, default
#   1800 s), and point grpo.vllm_server_host at it. When training ends the server is stopped.
# - The job exits with training's exit status (so `afterok` dependents run only after a good run).
# - `resume=true` is passed before your overrides: a fresh output_dir starts from step 0, a requeued
#   job continues from the newest checkpoint. 10 min before the time limit SLURM sends USR1 and the
#   job requeues itself (checkpoints.save_steps bounds the work lost).
# Assumes a filesystem shared by all nodes holding this repository, its .venv and output_dir.
# Environment knobs: GPUS_PER_NODE (default: the allocation's), MASTER_PORT (29512), SERVER_TIMEOUT,
# VLLM_TP (server tensor parallel, default GPUS_PER_NODE), VLLM_DP (1), PYTHON and MOELAB (.venv/bin/...).
#SBATCH --job-name=moelab-grpo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
#SBATCH --requeue
#SBATCH --signal=B:USR1@600
set -euo pipefail

LAB=${SLURM_SUBMIT_DIR:-$(pwd)}
cd "$LAB"
if [ ! -f rl/cluster.py ]; then
  echo "error: submit from the moelab repository root (the job started in $LAB)" >&2
  exit 2
fi
# shellcheck source=scripts/cluster_lib.sh
source scripts/cluster_lib.sh
CLUSTER_TAG=slurm

RECIPE=${1:?usage: sbatch scripts/slurm_grpo.sh RECIPE.yaml [key=value ...]}
shift
PYTHON=${PYTHON:-.venv/bin/python}
MOELAB=${MOELAB:-.venv/bin/moelab}
ALLOC_GPUS=${SLURM_GPUS_PER_NODE:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-${ALLOC_GPUS##*:}}  # "h100:8" -> 8
CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-1}
MASTER_PORT=${MASTER_PORT:-29512}
SERVER_TIMEOUT=${SERVER_TIMEOUT:-1800}
SERVER_POLL=${SERVER_POLL:-10}
VLLM_TP=${VLLM_TP:-$GPUS_PER_NODE}
VLLM_DP=${VLLM_DP:-1}
STEP_ARGS=(--cpus-per-task="$CPUS_PER_TASK" --gpus-per-node="$GPUS_PER_NODE" --kill-on-bad-exit=1)

PLAN=$("$PYTHON" -m rl.cluster plan "$RECIPE" "$@")  # validates the recipe: a bad key ends the job here
read -r SERVER_MODE SERVER_PORT <<< "$PLAN"
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
TRAIN_NODES=("${NODES[@]}")
EXTRA=()
SERVER_PID=
TRAIN_PID=

# shellcheck disable=SC2329  # run by the trap
on_exit() {
  [ -z "$TRAIN_PID" ] || stop_step "$TRAIN_PID" "training step"
  [ -z "$SERVER_PID" ] || stop_step "$SERVER_PID" "vLLM server"
}
trap on_exit EXIT
# shellcheck disable=SC2329  # run by the trap
on_time_limit() {
  log "job $SLURM_JOB_ID is near its time limit: requeueing it (resume=true continues from the newest checkpoint)"
  scontrol requeue "$SLURM_JOB_ID"
}
trap on_time_limit USR1

if [ "$SERVER_MODE" = server ]; then
  if [ "${#NODES[@]}" -lt 2 ]; then
    echo "error: the recipe uses a vLLM server (grpo.vllm_mode=server), which takes a node of its own:" \
         "submit with --nodes=2 or more, or set grpo.vllm_mode=colocate" >&2
    exit 2
  fi
  SERVER_NODE=${NODES[${#NODES[@]}-1]}
  TRAIN_NODES=("${NODES[@]:0:${#NODES[@]}-1}")
  log "vLLM server on $SERVER_NODE (TP $VLLM_TP, DP $VLLM_DP), port $SERVER_PORT"
  srun --nodes=1 --ntasks=1 --nodelist="$SERVER_NODE" "${STEP_ARGS[@]}" \
      "$PYTHON" -m rl.cluster serve --tensor-parallel-size "$VLLM_TP" --data-parallel-size "$VLLM_DP" \
      "$RECIPE" "$@" &
  SERVER_PID=$!
  wait_for_server "http://$SERVER_NODE:$SERVER_PORT/health" "$SERVER_PID" "$SERVER_TIMEOUT" "$SERVER_POLL"
  EXTRA+=("grpo.vllm_server_host=$SERVER_NODE")
fi

NUM_NODES=${#TRAIN_NODES[@]}
NODELIST=$(IFS=,; echo "${TRAIN_NODES[*]}")
log "training on $NUM_NODES node(s) x $GPUS_PER_NODE GPUs: $NODELIST (rendezvous ${TRAIN_NODES[0]}:$MASTER_PORT)"
# Single quotes: $SLURM_PROCID is expanded by each task, on its node; the arguments pass through as
# "$@" of `bash -c`, never re-split.
# shellcheck disable=SC2016
srun --nodes="$NUM_NODES" --ntasks="$NUM_NODES" --ntasks-per-node=1 --nodelist="$NODELIST" --wait=60 \
    "${STEP_ARGS[@]}" \
    bash -c 'exec "$0" grpo "$@" launch.machine_rank="$SLURM_PROCID"' "$MOELAB" "$RECIPE" resume=true "$@" \
    ${EXTRA[@]+"${EXTRA[@]}"} launch.num_processes="$GPUS_PER_NODE" launch.num_machines="$NUM_NODES" \
    launch.main_process_ip="${TRAIN_NODES[0]}" launch.main_process_port="$MASTER_PORT" &
TRAIN_PID=$!
STATUS=0
wait_status "$TRAIN_PID" || STATUS=$?
TRAIN_PID=
log "training exited with status $STATUS"
exit "$STATUS"
