"""Run a completion's program and return its answer, with limits and a hard wall-clock deadline.

The study scored GSM8K answers written as `def simple_math_problem(): ... return result` (and
`<llm-code>` blocks) by executing them with a 3 s limit. Here every program runs in a fresh
`python -I -S rewards/sandbox_child.py` process (limits and audit hook are set up there, see its
docstring), in an empty temporary directory that is deleted afterwards, and is SIGKILLed when
the deadline passes. This is damage control for model mistakes, not a security boundary against a
determined attacker (see README, "Sandbox").

Libraries: the released checkpoints were pretrained on OpenMathInstruct-style solutions whose
`<llm-code>` blocks commonly `from sympy import ...`, so `sympy` (with its `mpmath`) and `numpy` are
importable too: read from the lab's own environment, pre-imported before any limit is set, and
only when the program names them (their import costs time a plain program should not pay:
rewards/README.md, "Sandbox").
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")
# Libraries a program may import beyond the standard library, and what each one pre-imports.
# sympy and numpy load some submodules only when first used (`solve` needs `sympy.tensor.tensor`); once
# limits are set no file can be opened, so those used by arithmetic code are loaded here as well.
LIBRARIES = {
    "sympy": ("mpmath", "sympy", "sympy.tensor.tensor", "sympy.concrete.delta", "sympy.integrals.heurisch",
              "sympy.integrals.manualintegrate", "sympy.integrals.risch", "sympy.sets.handlers.functions",
              "sympy.sets.handlers.issubset", "sympy.sets.setexpr", "sympy.assumptions.wrapper", "sympy.stats",
              "sympy.combinatorics", "sympy.physics.units", "sympy.codegen.ast"),
    "mpmath": ("mpmath",),
    "numpy": ("numpy", "numpy.fft", "numpy.polynomial", "numpy.random", "numpy.ma"),
}
# Extra wall-clock seconds for a program that needs them: their import happens inside the child.
LIBRARY_IMPORT_S = 3.0
_IMPORT_LINE_RE = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import|import[ \t]+([\w., \t]+))", re.MULTILINE)
# numpy's BLAS must not start a thread per core (nor reserve their buffers) inside the memory limit;
# OPENBLAS_CORETYPE/L2_SIZE are passed on where the machine sets them (older OpenBLAS needs them).
_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_PASSED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def libraries_used(code: str) -> list[str]:
    """The allowed libraries `code` imports (`from sympy import *`, `import math, numpy as np`), sorted."""
    names = set()
    for source, modules in _IMPORT_LINE_RE.findall(code):
        for module in ([source] if source else modules.split(",")):
            names.add(module.strip().split(" ")[0].split(".")[0])
    return sorted(names & set(LIBRARIES))


@functools.lru_cache(maxsize=None)
def _library_paths(libraries: tuple[str, ...]) -> tuple[str, ...]:
    """The folders that hold the libraries in the lab's environment (site-packages, usually one);
    looked up once per worker, not once per program."""
    paths = []
    for library in libraries:
        for module in {m.split(".")[0] for m in LIBRARIES[library]}:
            spec = importlib.util.find_spec(module)
            if spec is not None and spec.submodule_search_locations:
                folder = str(Path(next(iter(spec.submodule_search_locations))).parent)
                if folder not in paths:
                    paths.append(folder)
    return tuple(paths)


def deadline_for(code: str, timeout_s: float) -> float:
    """Wall-clock seconds `run_code` may take for this program (its limit plus library imports)."""
    return _deadline(timeout_s, libraries_used(code))


def _deadline(timeout_s: float, libraries: list[str]) -> float:
    return timeout_s + 0.5 + (LIBRARY_IMPORT_S if libraries else 0.0)


@dataclass(frozen=True)
class CodeResult:
    """`status`: `ok` (answer set), `failed` (the code raised or returned nothing), `timeout`."""

    status: str
    answer: str | None = None
    detail: str = ""


CONVENTIONS = ("lab", "study_last_line", "study_function")


def run_code(code: str, timeout_s: float = 3.0, memory_mb: int = 512, convention: str = "lab") -> CodeResult:
    """Execute `code` in the sandbox; return its answer.

    `convention` says which value is the answer (`sandbox_child` documents each): `lab` (the lab's),
    or the study's GRPO reward's two: `study_last_line` (`<llm-code>`: the last line, evaluated after the
    program ran) and `study_function` (TinyGSM: `str(simple_math_problem())`)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown answer convention {convention!r}; expected one of {CONVENTIONS}")
    workdir = tempfile.mkdtemp(prefix="moelab-sandbox-")
    cpu_s = max(1, int(timeout_s + 0.999))
    libraries = libraries_used(code)
    modules = [module for library in libraries for module in LIBRARIES[library]]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           **_THREAD_ENV, **{k: os.environ[k] for k in _PASSED_ENV if k in os.environ}}
    command = [sys.executable, "-I", "-S", str(CHILD), str(cpu_s), str(memory_mb),
               ",".join(dict.fromkeys(modules)), os.pathsep.join(_library_paths(tuple(libraries))), convention]
    try:
        process = subprocess.Popen(command,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   cwd=workdir, env=env, close_fds=True)
        try:
            out, _ = process.communicate(code.encode("utf-8", "replace"), timeout=_deadline(timeout_s, libraries))
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
