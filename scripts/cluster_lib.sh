# shellcheck shell=bash
# Functions shared by scripts/slurm_grpo.sh and scripts/pbs_grpo.sh (sourced, not run): wait for the
# vLLM server to answer, stop it, and wait for a background step while still taking signals.
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
