#!/usr/bin/env bash
# GRPO across nodes with PBS (the study's cluster used PBS): one `moelab grpo` per node, each
# launching its GPU processes through `accelerate launch`; the first node in $PBS_NODEFILE is the
# rendezvous host.
#
#   qsub -l select=2:ngpus=8 -v RECIPE=configs/grpo/paper_d1024.yaml,OVERRIDES="max_steps=420" scripts/pbs_grpo.sh
#
# vLLM server mode: run `trl vllm-serve --model <checkpoint> --tensor-parallel-size 8` on one node
# yourself and pass OVERRIDES="grpo.vllm_mode=server grpo.vllm_server_host=<that node>" (see
# scripts/slurm_grpo.sh for the automated version).
#PBS -N moelab-grpo
#PBS -l select=2:ngpus=8
#PBS -l walltime=24:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-$(dirname "$0")/..}"
RECIPE=${RECIPE:?pass -v RECIPE=configs/grpo/....yaml}
read -r -a OVERRIDE_ARGS <<< "${OVERRIDES:-}"
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
PORT=${PORT:-29512}
mapfile -t NODES < <(sort -u "$PBS_NODEFILE")
NUM_NODES=${#NODES[@]}
HEAD=${NODES[0]}
LAB=$(pwd)
for RANK in $(seq 0 $((NUM_NODES - 1))); do
  # pbsdsh/ssh start one launcher per node; each starts GPUS_PER_NODE training processes.
  ssh "${NODES[$RANK]}" "cd $LAB && .venv/bin/moelab grpo $RECIPE ${OVERRIDE_ARGS[*]:-} \
      launch.num_processes=$GPUS_PER_NODE launch.num_machines=$NUM_NODES launch.machine_rank=$RANK \
      launch.main_process_ip=$HEAD launch.main_process_port=$PORT" &
done
wait
