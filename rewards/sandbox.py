"""Run a completion's program and return its answer, with limits and a hard wall-clock deadline.

The study scored GSM8K answers written as `def simple_math_problem(): ... return result` (and
`<llm-code>` blocks) by executing them with a 3 s limit. Here every program runs in a fresh
`python -I -S rewards/sandbox_child.py` process (limits and audit hook are set up there, see its
docstring), in an empty temporary directory that is deleted afterwards, and is SIGKILLed when
the deadline passes. This is damage control for model mistakes, not a security boundary against a
determined attacker (see README, "Sandbox").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")


@dataclass(frozen=True)
class CodeResult:
    """`status`: `ok` (answer set), `failed` (the code raised or returned nothing), `timeout`."""

    status: str
    answer: str | None = None
    detail: str = ""


def run_code(code: str, timeout_s: float = 3.0, memory_mb: int = 512) -> CodeResult:
    """Execute `code` in the sandbox; return its answer (see `sandbox_child` for the convention)."""
    workdir = tempfile.mkdtemp(prefix="moelab-sandbox-")
    cpu_s = max(1, int(timeout_s + 0.999))
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        process = subprocess.Popen([sys.executable, "-I", "-S", str(CHILD), str(cpu_s), str(memory_mb)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   cwd=workdir, env=env, close_fds=True)
        try:
            out, _ = process.communicate(code.encode("utf-8", "replace"), timeout=timeout_s + 0.5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return CodeResult("timeout", detail=f"code still running after {timeout_s:g} s: killed")
        created = os.listdir(workdir)
        if process.returncode != 0 or not out.strip():
            reason = _signal_name(process.returncode)
            return CodeResult("timeout" if reason == "SIGXCPU" else "failed",
                              detail=f"code process ended without an answer ({reason})")
        reply = json.loads(out.decode("utf-8", "replace").strip().splitlines()[-1])
        if created:  # cannot happen with RLIMIT_FSIZE=0 and the audit hook; never trust such a run
            return CodeResult("failed", detail=f"code created files {created[:3]}: answer discarded")
        if reply.get("ok"):
            return CodeResult("ok", answer=reply.get("answer"))
        return CodeResult("failed", detail=str(reply.get("error") or "no answer"))
    except (OSError, ValueError) as err:
        return CodeResult("failed", detail=f"sandbox could not run the code: {err}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _signal_name(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        import signal

        try:
            return signal.Signals(-returncode).name
        except ValueError:
            pass
    return f"exit status {returncode}"
