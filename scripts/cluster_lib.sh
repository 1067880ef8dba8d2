# shellcheck shell=bash
# Functions shared by the cluster scripts (sourced, not run). slurm_grpo.sh and pbs_grpo.sh: wait for the
# vLLM server to answer, stop it, and wait for a background step while still taking signals.
# slurm_array.sh and pbs_array.sh: one array task's `moelab ... --shard I/N` (run_shard).
# Written for bash >= 4.2 (RHEL 7): no `wait -n`, no `mapfile -d`, and an empty array is expanded as
# ${A[@]+"${A[@]}"}, which `set -u` accepts on every bash (plain "${A[@]}" fails on bash < 4.4).

# log MESSAGE...: one line on stdout, tagged with the script's name.
log() { echo "[${CLUSTER_TAG:-cluster}] $*"; }

# server_healthy URL: exit status 0 when URL answers HTTP 200 within 5 s.
server_healthy() {
  "$PYTHON" -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=5).status == 200 else 1)
except Exception:
    sys.exit(1)' "$1"
}

# wait_for_server URL PID TIMEOUT_S POLL_S: return 0 once URL (the server's /health) answers; return 1
# with a message saying what happened if the server step PID exits first or TIMEOUT_S passes.
wait_for_server() {
  local url=$1 pid=$2 timeout=$3 poll=$4 start=$SECONDS status
  log "waiting for the vLLM server: $url (up to ${timeout} s, SERVER_TIMEOUT)"
  until server_healthy "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      status=0; wait "$pid" || status=$?
      echo "error: the vLLM server step exited (status $status) before $url answered; no trainer was started." \
           "Its output is above (model path, GPUs, port in use?)" >&2
      return 1
    fi
    if (( SECONDS - start >= timeout )); then
      echo "error: the vLLM server did not answer $url within ${timeout} s; no trainer was started. A large" \
           "model may need longer: resubmit with SERVER_TIMEOUT=<seconds> (the server's output is above)" >&2
      return 1
    fi
    sleep "$poll"
  done
  log "vLLM server healthy after $(( SECONDS - start )) s"
}

# stop_step PID [NAME]: SIGTERM a background step (srun/pbsdsh forwards it to its tasks), SIGKILL after 30 s.
stop_step() {
  local pid=$1 name=${2:-step} i
  kill -0 "$pid" 2>/dev/null || return 0
  log "stopping the $name"
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < 30; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# wait_status PID: wait for a background step and return its exit status. A trapped signal (the
# time-limit USR1) interrupts `wait` with 128+signal while the step runs on; then wait again.
wait_status() {
  local pid=$1 status
  while :; do
    status=0; wait "$pid" 2>/dev/null || status=$?
    kill -0 "$pid" 2>/dev/null && continue
    if (( status > 128 )); then status=0; wait "$pid" 2>/dev/null || status=$?; fi  # died during the signal
    return "$status"
  done
}

# read_overrides: the PBS overrides, one per line: OVERRIDES_FILE's lines (any characters; `#` lines and
# blank lines skipped), else OVERRIDES split at spaces (the short form, for values without spaces).
read_overrides() {
  local item short
  if [ -n "${OVERRIDES_FILE:-}" ]; then
    [ -f "$OVERRIDES_FILE" ] || { echo "error: OVERRIDES_FILE=$OVERRIDES_FILE: no such file" >&2; return 2; }
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$OVERRIDES_FILE" || true
    return 0
  fi
  read -r -a short <<< "${OVERRIDES:-}"
  for item in ${short[@]+"${short[@]}"}; do printf '%s\n' "$item"; done
}

# run_shard INDEX COUNT SUBCOMMAND RECIPE [key=value ...]: one array task, `$MOELAB SUBCOMMAND RECIPE
# [key=value ...] --shard INDEX/COUNT` (inference/jobs/shards.py: which task gets which models); returns its exit
# status. Status 2 with one line, before anything runs, for a subcommand that has no --shard, a --shard
# given by hand, or an index outside 0..COUNT-1.
run_shard() {
  local index=$1 count=$2 command=${3:-} moelab=${MOELAB:-.venv/bin/moelab} arg status
  shift 2
  case $command in
    eval|taskloss|sweep) ;;
    *) echo "error: an array runs \`moelab eval|taskloss|sweep RECIPE [key=value ...]\`; got subcommand" \
            "'${command}' (usage: the header of scripts/${CLUSTER_TAG:-slurm}_array.sh)" >&2
       return 2 ;;
  esac
  if [ $# -lt 2 ]; then
    echo "error: moelab $command needs a recipe: ... $command RECIPE.yaml [key=value ...]" >&2
    return 2
  fi
  for arg in "$@"; do
    case $arg in --shard|--shard=*)
      echo "error: do not pass --shard: the array script adds --shard INDEX/COUNT from the array index" >&2
      return 2 ;;
    esac
  done
  if ! [[ $index =~ ^[0-9]+$ && $count =~ ^[0-9]+$ ]] || (( index >= count )); then
    echo "error: array index $index of $count tasks: indices must run 0..N-1 (submit the range 0-$((count - 1)))," \
         "or set SHARDS=N to rerun some tasks of an N-task array" >&2
    return 2
  fi
  log "task $index/$count: $moelab $* --shard $index/$count"
  status=0
  "$moelab" "$@" --shard "$index/$count" || status=$?
  log "task $index/$count exited with status $status"
  return "$status"
}
