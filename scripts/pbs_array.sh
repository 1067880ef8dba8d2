#!/usr/bin/env bash
# A PBS array over models (the study's cluster used PBS): each subjob runs
# `moelab eval|taskloss|sweep RECIPE [key=value ...] --shard I/N` with I its array index and N the array's
# size, all writing into the recipe's one output_dir (inference/jobs/shards.py says which subjob gets which
# models; a sweep with fewer models than subjobs also splits problems). Submit from the repository root:
#
#   qsub -J 0-7 -v SUBCOMMAND=eval,RECIPE=configs/eval/study-math.yaml scripts/pbs_array.sh
#   qsub -J 0-7 -v SUBCOMMAND=taskloss,RECIPE=configs/taskloss/study-gsm8k.yaml,OVERRIDES_FILE=o.txt scripts/pbs_array.sh
#   qsub -t 0-7 -F "sweep configs/sweep/paper-gsm8k.yaml" -v SHARDS=8 scripts/pbs_array.sh   # Torque
#
# Then collect: the same command without --shard, once every subjob has succeeded, finds each model done,
# computes nothing again and writes the tables (results.csv, taskloss.csv; the sweep's scored.parquet,
# metrics.csv and plots). `moelab deficit` reads them (eval.output=OUTPUT_DIR, ...):
#
#   JOB=$(qsub -J 0-7 -v SUBCOMMAND=eval,RECIPE=configs/eval/study-math.yaml scripts/pbs_array.sh)
#   echo 'cd "$PBS_O_WORKDIR" && .venv/bin/moelab eval configs/eval/study-math.yaml' \
#       | qsub -N moelab-collect -W depend=afterok:$JOB -j oe -o logs/
#   (PBS Pro: afterok on the array job waits for every subjob; Torque: -W depend=afterokarray:$JOB.)
#
# - The command: SUBCOMMAND and RECIPE (-v), or positional arguments (Torque's -F "SUBCOMMAND RECIPE ...").
#   Overrides: OVERRIDES_FILE names a file with one `key=value` per line (any characters, spaces included;
#   `#` lines skipped); OVERRIDES="a=1 b=2" is the short form for values without spaces.
# - I is PBS_ARRAY_INDEX (PBS Pro; Torque: PBS_ARRAYID). N is SHARDS when given, else read from
#   `qstat -f` of the array job (its range must be 0-<N-1>, without a step). To rerun only some subjobs of an
#   N-subjob array: `qsub -J 3-5 -v SHARDS=8,...`. A subjob that finished is a no-op when run again.
# - The subjob exits with moelab's exit status; a bad recipe key or value fails every subjob at once with one
#   line, before any model loads.
# - Logs: logs/ (PBS names them <job name>.o<array id>.<index>).
# Assumes a filesystem shared by all nodes holding this repository, its .venv and output_dir.
# Environment knobs: SHARDS (N), MOELAB (.venv/bin/moelab).
#PBS -N moelab-array
#PBS -l select=1:ncpus=16:ngpus=1
#PBS -l walltime=24:00:00
#PBS -j oe
#PBS -o logs/
#PBS -r y
set -euo pipefail

LAB=${PBS_O_WORKDIR:-$(pwd)}
cd "$LAB"
if [ ! -f inference/jobs/shards.py ]; then
  echo "error: submit from the moelab repository root (the job started in $LAB)" >&2
  exit 2
fi
# shellcheck source=scripts/cluster_lib.sh
source scripts/cluster_lib.sh
CLUSTER_TAG=pbs

INDEX=${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-}}
if [ -z "$INDEX" ]; then
  echo "error: not a PBS array subjob (PBS_ARRAY_INDEX is unset): submit with qsub -J 0-<N-1>" \
       "-v SUBCOMMAND=eval|taskloss|sweep,RECIPE=RECIPE.yaml scripts/pbs_array.sh" >&2
  exit 2
fi

ARGS=()
if [ $# -gt 0 ]; then
  ARGS=("$@")
else
  [ -z "${SUBCOMMAND:-}" ] || ARGS+=("$SUBCOMMAND")
  [ -z "${RECIPE:-}" ] || ARGS+=("$RECIPE")
  OVERRIDES_TEXT=$(read_overrides) || exit 2
  while IFS= read -r item; do [ -z "$item" ] || ARGS+=("$item"); done <<< "$OVERRIDES_TEXT"
fi

if [ -n "${SHARDS:-}" ]; then
  COUNT=$SHARDS
else
  # The array's own range, e.g. `array_indices_submitted = 0-7` (PBS Pro) or `job_array_request = 0-7` (Torque).
  RANGE=$(qstat -f "${PBS_ARRAY_ID:-${PBS_JOBID:-}}" 2>/dev/null \
          | awk -F' = ' '/array_indices_submitted|job_array_request/ { print $2; exit }') || true
  if ! [[ ${RANGE:-} =~ ^0-([0-9]+)$ ]]; then
    echo "error: cannot tell the array's size N from qstat (its range: '${RANGE:-unknown}'; it must be 0-<N-1>):" \
         "pass it, qsub -v SHARDS=N,..." >&2
    exit 2
  fi
  COUNT=$(( BASH_REMATCH[1] + 1 ))
fi

STATUS=0
run_shard "$INDEX" "$COUNT" ${ARGS[@]+"${ARGS[@]}"} || STATUS=$?
exit "$STATUS"
