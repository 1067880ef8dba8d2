#!/usr/bin/env bash
# GRPO across nodes with PBS (the study's cluster used PBS). Submit from the repository root:
#
#   qsub -l select=2:ngpus=8 -v RECIPE=configs/grpo/paper_d1024.yaml,OVERRIDES_FILE=my-overrides.txt scripts/pbs_grpo.sh
#   qsub -l select=3:ngpus=8 -v RECIPE=configs/grpo/paper_d2048.yaml scripts/pbs_grpo.sh   # vllm_mode: server
#
# Overrides: OVERRIDES_FILE names a file with one `key=value` per line (any characters, spaces
# included; `#` lines skipped); OVERRIDES="a=1 b=2" is the short form for values without spaces.
# They are copied to logs/pbs-<job id>/overrides and every rank reads that file: nothing is re-split
# by a remote shell.
# Ranks start through `pbsdsh` (PBS's own task launcher: the ranks stay under PBS's control and are
# killed with the job), one per node; pbsdsh starts tasks with PBS's bare environment, so this script
# forwards the job's exported environment (PATH, HF_HOME, CUDA/NCCL settings, ...) to each rank
# through logs/pbs-<job id>/env.sh. Each rank runs `moelab grpo RECIPE resume=true <overrides>
# launch.machine_rank=<rank> ...`, which starts GPUS_PER_NODE processes through `accelerate launch`;
# the first node is the rendezvous host. The first rank to fail ends the job with its status (PBS then
# kills the other ranks); the job's status is training's.
# `grpo.use_vllm: true, grpo.vllm_mode: server`: the last node runs `vllm serve` (rl/cluster.py) and the
# trainers start once its /health answers (SERVER_TIMEOUT, default 1800 s); it is stopped at the end.
# Assumes a filesystem shared by all nodes holding this repository, its .venv and output_dir.
#PBS -N moelab-grpo
#PBS -l select=2:ngpus=8
#PBS -l walltime=24:00:00
#PBS -j oe
#PBS -r y
set -euo pipefail

# ---- one rank on one node, started by pbsdsh below: scripts/pbs_grpo.sh --rank|--serve STATE_DIR [RANK]
if [ "${1:-}" = --rank ] || [ "${1:-}" = --serve ]; then
  # shellcheck source=/dev/null
  source "$2/env.sh"  # the job's environment and `cd` to the repository
  # set after it: the job may export names of its own (RANK, STATE, ...), and this task's arguments must win
  ROLE=$1 STATE=$2 RANK=${3:-}
  mapfile -t OVERRIDES_ARGS < "$STATE/overrides"
  PYTHON=${PYTHON:-.venv/bin/python}
  if [ "$ROLE" = --serve ]; then
    exec "$PYTHON" -m rl.cluster serve --tensor-parallel-size "$VLLM_TP" --data-parallel-size "$VLLM_DP" \
        "$RECIPE" ${OVERRIDES_ARGS[@]+"${OVERRIDES_ARGS[@]}"}
  fi
  STATUS=0
  "${MOELAB:-.venv/bin/moelab}" grpo "$RECIPE" resume=true ${OVERRIDES_ARGS[@]+"${OVERRIDES_ARGS[@]}"} \
      ${TRAIN_EXTRA:+"$TRAIN_EXTRA"} launch.num_processes="$GPUS_PER_NODE" launch.num_machines="$NUM_NODES" \
      launch.machine_rank="$RANK" launch.main_process_ip="$HEAD" launch.main_process_port="$MASTER_PORT" \
      || STATUS=$?
  echo "$STATUS" > "$STATE/rank-$RANK.status"
  exit "$STATUS"
fi

# ---- the job
LAB=${PBS_O_WORKDIR:-$(pwd)}
cd "$LAB"
if [ ! -f rl/cluster.py ]; then
  echo "error: submit from the moelab repository root (the job started in $LAB)" >&2
  exit 2
fi
# shellcheck source=scripts/cluster_lib.sh
source scripts/cluster_lib.sh
CLUSTER_TAG=pbs
RECIPE=${RECIPE:?pass -v RECIPE=configs/grpo/....yaml}
PYTHON=${PYTHON:-.venv/bin/python}
export GPUS_PER_NODE=${GPUS_PER_NODE:-8}
export MASTER_PORT=${MASTER_PORT:-29512}
export VLLM_TP=${VLLM_TP:-$GPUS_PER_NODE} VLLM_DP=${VLLM_DP:-1}
SERVER_TIMEOUT=${SERVER_TIMEOUT:-1800}
SERVER_POLL=${SERVER_POLL:-10}
STATE=$LAB/logs/pbs-${PBS_JOBID:-$$}
mkdir -p "$STATE"
rm -f "$STATE"/rank-*.status

if [ -n "${OVERRIDES_FILE:-}" ]; then
  grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$OVERRIDES_FILE" > "$STATE/overrides" || true
else
  read -r -a SHORT <<< "${OVERRIDES:-}"
  : > "$STATE/overrides"
  for item in ${SHORT[@]+"${SHORT[@]}"}; do printf '%s\n' "$item" >> "$STATE/overrides"; done
fi
mapfile -t OVERRIDES_ARGS < "$STATE/overrides"
PLAN=$("$PYTHON" -m rl.cluster plan "$RECIPE" ${OVERRIDES_ARGS[@]+"${OVERRIDES_ARGS[@]}"})  # validates the recipe
read -r SERVER_MODE SERVER_PORT <<< "$PLAN"

# Unique hosts in node-file order, and the index of each one's first line (pbsdsh -n counts lines).
mapfile -t HOSTS < <(awk '!seen[$0]++' "$PBS_NODEFILE")
mapfile -t HOST_INDEX < <(awk '!seen[$0]++ { print NR - 1 }' "$PBS_NODEFILE")
NUM_NODES=${#HOSTS[@]}
TRAIN_EXTRA=
SERVER_PID=
declare -a RANK_PIDS=()

# shellcheck disable=SC2329  # run by the trap
on_exit() {
  local pid
  for pid in ${RANK_PIDS[@]+"${RANK_PIDS[@]}"}; do [ -z "$pid" ] || stop_step "$pid" "rank launcher $pid"; done
  [ -z "$SERVER_PID" ] || stop_step "$SERVER_PID" "vLLM server"
}
trap on_exit EXIT

if [ "$SERVER_MODE" = server ]; then
  if [ "$NUM_NODES" -lt 2 ]; then
    echo "error: the recipe uses a vLLM server (grpo.vllm_mode=server), which takes a node of its own:" \
         "submit with select=2 or more, or set grpo.vllm_mode=colocate" >&2
    exit 2
  fi
  NUM_NODES=$((NUM_NODES - 1))
  SERVER_HOST=${HOSTS[$NUM_NODES]}
  TRAIN_EXTRA=grpo.vllm_server_host=$SERVER_HOST
fi
export RECIPE NUM_NODES TRAIN_EXTRA HEAD=${HOSTS[0]}

# The job's exported environment for the ranks, minus what is the node's or the task's own.
{
  while read -r name; do
    case $name in
      PBS_*|HOSTNAME|HOST|PWD|OLDPWD|SHLVL|_|BASHOPTS|SHELLOPTS|BASH_*|TMPDIR|ENVIRONMENT) ;;
      *) declare -px "$name" ;;
    esac
  done < <(compgen -e)
  printf 'cd %q\n' "$LAB"
} > "$STATE/env.sh"

if [ "$SERVER_MODE" = server ]; then
  log "vLLM server on $SERVER_HOST (TP $VLLM_TP, DP $VLLM_DP), port $SERVER_PORT"
  pbsdsh -n "${HOST_INDEX[$NUM_NODES]}" -- /bin/bash "$LAB/scripts/pbs_grpo.sh" --serve "$STATE" &
  SERVER_PID=$!
  wait_for_server "http://$SERVER_HOST:$SERVER_PORT/health" "$SERVER_PID" "$SERVER_TIMEOUT" "$SERVER_POLL"
fi

log "training on $NUM_NODES node(s) x $GPUS_PER_NODE GPUs (rendezvous $HEAD:$MASTER_PORT)"
for (( rank = 0; rank < NUM_NODES; rank++ )); do
  pbsdsh -n "${HOST_INDEX[$rank]}" -- /bin/bash "$LAB/scripts/pbs_grpo.sh" --rank "$STATE" "$rank" &
  RANK_PIDS+=($!)
done

# Wait for every rank; the first one that fails ends the job with its status (a rank's status file,
# else its launcher's, if the launcher died without one).
STATUS=0
while :; do
  running=0
  for (( rank = 0; rank < NUM_NODES; rank++ )); do
    pid=${RANK_PIDS[$rank]}
    [ -n "$pid" ] || continue  # finished and checked
    if kill -0 "$pid" 2>/dev/null; then running=$((running + 1)); continue; fi
    code=0; wait "$pid" 2>/dev/null || code=$?
    RANK_PIDS[rank]=
    [ ! -s "$STATE/rank-$rank.status" ] || code=$(< "$STATE/rank-$rank.status")
    if [ "$code" -ne 0 ]; then STATUS=$code; log "rank $rank failed with status $code"; break 2; fi
  done
  [ "$running" -gt 0 ] || break
  sleep 2
done
log "training exited with status $STATUS"
exit "$STATUS"
