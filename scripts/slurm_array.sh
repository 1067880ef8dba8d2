#!/usr/bin/env bash
# A SLURM array over models: each task runs `moelab eval|taskloss|sweep RECIPE [key=value ...] --shard I/N`
# with I its array index and N the array's size, all writing into the recipe's one output_dir
# (inference/jobs/shards.py says which task gets which models; a sweep with fewer models than tasks also splits
# problems). Submit from the repository root:
#
#   sbatch --array=0-7 scripts/slurm_array.sh eval configs/eval/study-math.yaml [key=value ...]
#   sbatch --array=0-7 scripts/slurm_array.sh taskloss configs/taskloss/study-gsm8k.yaml
#   sbatch --array=0-15 scripts/slurm_array.sh sweep configs/sweep/paper-gsm8k.yaml
#
# Then collect: the same command without --shard, once every task has succeeded, finds each model done,
# computes nothing again and writes the tables (results.csv, taskloss.csv; the sweep's scored.parquet,
# metrics.csv and plots). `moelab deficit` reads them (eval.output=OUTPUT_DIR, ...):
#
#   JOB=$(sbatch --parsable --array=0-7 scripts/slurm_array.sh eval configs/eval/study-math.yaml)
#   sbatch --dependency=afterok:$JOB --output=logs/%x-%j.out --wrap ".venv/bin/moelab eval configs/eval/study-math.yaml"
#
# - N is SLURM_ARRAY_TASK_COUNT (else MAX - MIN + 1); indices must run 0..N-1. To rerun only some tasks of an
#   N-task array, give N: `SHARDS=8 sbatch --array=3,5 scripts/slurm_array.sh ...` (sbatch exports it).
#   A task that finished is a no-op when run again; one that was killed resumes.
# - The job exits with moelab's exit status (so `afterok` collects only after every task succeeded); a
#   bad recipe key or value fails every task at once with one line, before any model loads.
# - Logs: logs/<job name>-<array job id>_<index>.out.
# Assumes a filesystem shared by all nodes holding this repository, its .venv and output_dir.
# Environment knobs: SHARDS (N), MOELAB (.venv/bin/moelab).
#SBATCH --job-name=moelab-array
#SBATCH --ntasks=1
#SBATCH --gpus=1
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%A_%a.out
#SBATCH --requeue
set -euo pipefail

LAB=${SLURM_SUBMIT_DIR:-$(pwd)}
cd "$LAB"
if [ ! -f inference/jobs/shards.py ]; then
  echo "error: submit from the moelab repository root (the job started in $LAB)" >&2
  exit 2
fi
# shellcheck source=scripts/cluster_lib.sh
source scripts/cluster_lib.sh
CLUSTER_TAG=slurm

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  echo "error: not a SLURM array task (SLURM_ARRAY_TASK_ID is unset): submit with" \
       "sbatch --array=0-<N-1> scripts/slurm_array.sh eval|taskloss|sweep RECIPE [key=value ...]" >&2
  exit 2
fi
if [ -n "${SHARDS:-}" ]; then
  COUNT=$SHARDS
else
  # Without SHARDS the array itself must be 0..N-1: a step, a gap or a start above 0 would leave models to no task.
  MIN=${SLURM_ARRAY_TASK_MIN:-0} MAX=${SLURM_ARRAY_TASK_MAX:-}
  if [ -z "$MAX" ]; then
    echo "error: SLURM_ARRAY_TASK_MAX is unset, so the array's size is unknown: give it, SHARDS=N" >&2
    exit 2
  fi
  COUNT=${SLURM_ARRAY_TASK_COUNT:-$(( MAX - MIN + 1 ))}
  if [ "$MIN" != 0 ] || [ "$MAX" != $(( COUNT - 1 )) ]; then
    echo "error: the array has $COUNT tasks with indices $MIN..$MAX; to cover every model they must be" \
         "0..N-1 (sbatch --array=0-$(( COUNT - 1 ))), or give N to rerun some tasks: SHARDS=N sbatch --array=3,5 ..." >&2
    exit 2
  fi
fi

STATUS=0
run_shard "$SLURM_ARRAY_TASK_ID" "$COUNT" "$@" || STATUS=$?
exit "$STATUS"
