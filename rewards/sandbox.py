"""Run a completion's program and return its answer, with limits and a hard wall-clock deadline.

The study scored GSM8K answers written as `def simple_math_problem(): ... return result` (and
`<llm-code>` blocks) by executing them with a 3 s limit. Here every program runs in a fresh
`python -I -S sandbox_child.py` process, SIGKILLed when the deadline passes, that sees only the
program: never the gold (the answer is compared by the caller, after the process has ended) and
never a file that holds one.

Isolation (`MOELAB_SANDBOX`: `auto`, the default, `bwrap` or `none`; rewards/README.md, "Sandbox"):
- `bwrap`: inside bubblewrap, with its own mount, PID, network, IPC, UTS and user namespaces, all
  capabilities dropped, a read-only view of only the interpreter, the system libraries and the allowed
  libraries, a private tmpfs as its working directory, a minimal environment (`_child_env`), a new
  session, and death with its parent. `auto` uses it wherever `bwrap` is installed and works.
- `none`: the same child, started plainly, in an empty temporary directory deleted afterwards. The
  lab says so once per process (`announce_isolation`).
Inside either, the child sets its limits, a seccomp filter (x86_64) and a stateless audit hook
(`sandbox_child.py`). `guard`: `none` without the seccomp filter, i.e. what holds on a machine with
neither; the tests measure it, and README says which escapes only the filter stops.

Libraries: the released checkpoints were pretrained on OpenMathInstruct-style solutions whose
`<llm-code>` blocks commonly `from sympy import ...`, so `sympy` (with its `mpmath`) and `numpy` are
importable too: read from the lab's own environment, pre-imported before any limit is set, and
only when the program names them (their import costs time a plain program should not pay:
rewards/README.md, "Sandbox").
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import json
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError

CHILD = Path(__file__).with_name("sandbox_child.py")
SECCOMP = Path(__file__).with_name("sandbox_seccomp.py")
MODE_ENV = "MOELAB_SANDBOX"
MODES = ("auto", "bwrap", "none", "guard")
# Where the child's files appear inside bubblewrap.
_INSIDE = "/moelab"
_INSIDE_LIBRARIES = _INSIDE + "/lib"
_SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# What the parent reads back from a program at most (its reply is a few kB; a program that prints more is
# killed rather than buffered), and the longest answer or error it accepts in that reply.
MAX_OUTPUT_BYTES = 1 << 20
MAX_ANSWER_CHARS = 10_000
logger = logging.getLogger(__name__)
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
# Standard-library modules a program may import beyond the child's own pre-imports (arithmetic: math,
# fractions, ...), pre-imported only when it names them: what HumanEval's prompts, solutions and tests
# import (typing, copy, hashlib, ...) and what model-written Python commonly does.
STANDARD_MODULES = {name: (name,) for name in (
    "typing", "copy", "bisect", "hashlib", "array", "numbers", "enum", "dataclasses", "abc", "textwrap",
    "unicodedata", "json", "struct", "binascii", "base64", "calendar", "string", "math", "cmath", "re",
    "itertools", "functools", "operator", "heapq", "random", "statistics", "fractions", "decimal", "datetime")}
STANDARD_MODULES["collections"] = ("collections", "collections.abc")
# Extra wall-clock seconds for a program that needs them: their import happens inside the child.
LIBRARY_IMPORT_S = 3.0
_IMPORT_LINE_RE = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+import|import[ \t]+([\w., \t]+))", re.MULTILINE)
# numpy's BLAS must not start a thread per core (nor reserve their buffers) inside the memory limit;
# OPENBLAS_CORETYPE/L2_SIZE are passed on where the machine sets them (older OpenBLAS needs them).
_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_PASSED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _imported(code: str) -> set[str]:
    names = set()
    for source, modules in _IMPORT_LINE_RE.findall(code):
        for module in ([source] if source else modules.split(",")):
            names.add(module.strip().split(" ")[0].split(".")[0])
    return names


def libraries_used(code: str) -> list[str]:
    """The allowed libraries `code` imports (`from sympy import *`, `import math, numpy as np`), sorted."""
    return sorted(_imported(code) & set(LIBRARIES))


def standard_modules_used(code: str) -> list[str]:
    """The modules of `STANDARD_MODULES` that `code` imports, to be pre-imported (a program cannot open
    a module's file once its limits are set)."""
    return [module for name in sorted(_imported(code) & set(STANDARD_MODULES)) for module in STANDARD_MODULES[name]]


@functools.cache
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
    """`status`: `ok` (answer set), `failed` (the code raised or returned nothing), `timeout`, `crashed`
    (the process died of a signal: a segfault, an abort, the seccomp filter), `error` (the sandbox
    itself could not run: `MOELAB_SANDBOX=bwrap` where bubblewrap does not work). `isolation`: what held
    the program (`bwrap+seccomp`, `seccomp`, `bwrap` or `none`; the in-process guard is always on)."""

    status: str
    answer: str | None = None
    detail: str = ""
    isolation: str = ""


CONVENTIONS = ("lab", "study_last_line", "study_function", "tests")


def requested_mode() -> str:
    """`MOELAB_SANDBOX`, checked: `auto` (default), `bwrap`, `none` or `guard` (UserError otherwise)."""
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise UserError(f"{MODE_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


@functools.cache
def bwrap_problem() -> str | None:
    """Why bubblewrap cannot isolate programs here (None when it can): run once per process, by
    starting the interpreter inside it exactly as `run_code` will."""
    if _bwrap_path() is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    command = [*_bwrap_command(()), _interpreter(), "-I", "-S", "-c", "pass"]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=_child_env(), timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bwrap could not start: {err}"
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"bwrap fails here ({said[-1] if said else f'exit status {done.returncode}'}; user namespaces off?)"
    return None


def isolation_mode() -> str:
    """The isolation `run_code` uses in this process: `bwrap`, `none` or `guard`."""
    mode = requested_mode()
    if mode == "auto":
        return "none" if bwrap_problem() else "bwrap"
    return mode


_announced = False


def announce_isolation() -> str:
    """Say once per process, in one line, when model programs will run without OS isolation; return the
    mode. Callers that are about to execute code call it (the scorer does). UserError when
    `MOELAB_SANDBOX=bwrap` asks for isolation this machine cannot give."""
    global _announced
    mode = isolation_mode()
    if mode == "bwrap" and bwrap_problem():
        raise UserError(f"{MODE_ENV}=bwrap asks for OS isolation, but {bwrap_problem()}; "
                        f"fix that or set {MODE_ENV}=auto")
    if mode != "bwrap" and not _announced:
        _announced = True
        why = bwrap_problem() if requested_mode() == "auto" else f"{MODE_ENV}={mode}"
        held_by = "the in-process guard and a seccomp filter" if seccomp_applies(mode) else "the in-process guard"
        logger.warning("moelab: model programs run without OS isolation (%s): they are contained only by %s; "
                       "see rewards/README.md, 'Sandbox'", why, held_by)
    return mode


def seccomp_applies(mode: str) -> bool:
    """Whether programs run under the seccomp filter in `mode`: every mode but `guard`, where
    `sandbox_seccomp.py` has a system-call table for the machine."""
    from rewards.sandbox_seccomp import supported

    return mode != "guard" and supported()


def _interpreter() -> str:
    """The real interpreter binary (a venv's `python` is a symlink to it); the child needs no venv."""
    return os.path.realpath(sys.executable)


def _child_env() -> dict[str, str]:
    """The whole environment of the child (and of bwrap, whose own environment its PID 1 shows)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            **_THREAD_ENV, **{k: os.environ[k] for k in _PASSED_ENV if k in os.environ}}


@functools.cache
def _library_dirs(libraries: tuple[str, ...]) -> tuple[str, ...]:
    """The package folders of the allowed libraries (and numpy's `numpy.libs` of bundled shared
    libraries), to be mounted read-only one by one: the rest of site-packages stays out of sight."""
    dirs = []
    for folder in _library_paths(libraries):
        for library in libraries:
            for module in {m.split(".")[0] for m in LIBRARIES[library]}:
                for name in (module, module + ".libs"):
                    path = os.path.join(folder, name)
                    if os.path.isdir(path) and path not in dirs:
                        dirs.append(path)
    return tuple(dirs)


@functools.cache
def _bwrap_path() -> str | None:
    """bwrap's absolute path on the lab's PATH (the child's PATH is only /usr/bin:/bin)."""
    return shutil.which("bwrap")


@functools.cache
def _bwrap_command(libraries: tuple[str, ...]) -> tuple[str, ...]:
    """bubblewrap's arguments, up to the command it runs."""
    command = [_bwrap_path() or "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
               "--cap-drop", "ALL", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_DIRS:
        path = "/" + name
        if os.path.islink(path):
            command += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            command += ["--ro-bind", path, path]
    command += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    interpreter_root = os.path.realpath(sys.base_prefix)
    if not interpreter_root.startswith("/usr"):
        command += ["--ro-bind", interpreter_root, interpreter_root]
        for site in glob.glob(os.path.join(interpreter_root, "lib", "python3*", "site-packages")):
            command += ["--tmpfs", site]  # the interpreter's own installed packages: out of sight
    interpreter_dir = os.path.dirname(_interpreter())
    if not interpreter_dir.startswith(("/usr/", interpreter_root + "/")):
        command += ["--ro-bind", interpreter_dir, interpreter_dir]
    command += ["--ro-bind", str(CHILD), f"{_INSIDE}/{CHILD.name}", "--ro-bind", str(SECCOMP),
                f"{_INSIDE}/{SECCOMP.name}"]
    for folder in _library_dirs(libraries):
        command += ["--ro-bind", folder, f"{_INSIDE_LIBRARIES}/{os.path.basename(folder)}"]
    command += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp", "--clearenv"]
    for key, value in _child_env().items():
        command += ["--setenv", key, value]
    return tuple(command)


def run_code(code: str, timeout_s: float = 3.0, memory_mb: int = 512, convention: str = "lab",
             isolation: str | None = None) -> CodeResult:
    """Execute `code` in the sandbox; return its answer.

    `isolation`: `bwrap`, `none` or `guard` as decided by the caller (the scorer decides once, in the
    process that announces it, and hands it to its workers); None reads `MOELAB_SANDBOX` here.

    `convention` says which value is the answer (`sandbox_child` documents each): `lab` (the lab's),
    the study's GRPO reward's two: `study_last_line` (`<llm-code>`: the last line, evaluated after the
    program ran) and `study_function` (TinyGSM: `str(simple_math_problem())`), or `tests` (a program with
    its tests appended, as code benchmarks run: the answer is `passed` when it ran without an exception)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown answer convention {convention!r}; expected one of {CONVENTIONS}")
    try:
        mode = isolation or isolation_mode()
    except UserError as err:
        return CodeResult("error", detail=str(err))
    if mode not in MODES[1:]:
        return CodeResult("error", detail=f"unknown isolation {mode!r}; expected one of {', '.join(MODES[1:])}")
    if mode == "bwrap" and bwrap_problem():
        return CodeResult("error", detail=f"{MODE_ENV}=bwrap, but {bwrap_problem()}")
    cpu_s = max(1, int(timeout_s + 0.999))
    libraries = tuple(libraries_used(code))
    modules = ",".join(dict.fromkeys([*standard_modules_used(code),
                                      *(module for library in libraries for module in LIBRARIES[library])]))
    if mode == "bwrap":
        workdir = None
        command = [*_bwrap_command(libraries), _interpreter(), "-I", "-S", f"{_INSIDE}/{CHILD.name}", str(cpu_s),
                                               str(memory_mb), modules, _INSIDE_LIBRARIES if libraries else "",
                                               convention, "seccomp"]
    else:
        workdir = tempfile.mkdtemp(prefix="moelab-sandbox-")
        command = [sys.executable, "-I", "-S", str(CHILD), str(cpu_s), str(memory_mb), modules,
                   os.pathsep.join(_library_paths(libraries)), convention,
                   "noseccomp" if mode == "guard" else "seccomp"]
    try:
        return _run(command, code, workdir, _deadline(timeout_s, list(libraries)), timeout_s, mode == "bwrap",
                    filtered=seccomp_applies(mode))
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(command: list[str], code: str, workdir: str | None, deadline_s: float, timeout_s: float,
         bwrap: bool, filtered: bool) -> CodeResult:
    """Run the child; read back at most MAX_OUTPUT_BYTES. What the child says is checked, never trusted
    for more than its own answer: `isolation` is what the parent asked for and the child confirmed."""
    info_read, info_write = os.pipe() if bwrap else (-1, -1)
    if bwrap:  # bwrap writes {"child-pid": N} there: the host PID of its namespace's init, to kill on timeout
        command = command[:1] + ["--info-fd", str(info_write)] + command[1:]
    process = None
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, cwd=workdir or "/", env=_child_env(), close_fds=True,
                                   pass_fds=(info_write,) if bwrap else ())
        if bwrap:
            os.close(info_write)
            info_write = -1
        out, problem = _exchange(process, code.encode("utf-8", "replace"), deadline_s)
        if problem is not None:
            _end(process, info_read if bwrap else -1)
            if problem == "output":
                return CodeResult("failed", detail=f"code wrote more than {MAX_OUTPUT_BYTES} bytes: killed")
            return CodeResult("timeout", detail=f"code still running after {timeout_s:g} s: killed")
        reply = _reply(out)
        confirmed = filtered and reply.get("seccomp") is True
        isolation = "+".join(name for name, on in (("bwrap", bwrap), ("seccomp", confirmed)) if on) or "none"
        returncode = process.returncode
        if bwrap and returncode is not None and returncode > 128:
            returncode = 128 - returncode  # bwrap exits 128 + N when its child died of signal N
        if returncode != 0 or not reply:
            reason = _signal_name(returncode)
            status = "timeout" if reason in ("SIGXCPU", "SIGKILL") else "crashed" if returncode < 0 else "failed"
            return CodeResult(status, detail=f"code process ended without an answer ({reason})", isolation=isolation)
        created = os.listdir(workdir) if workdir else []
        if created:  # cannot happen with RLIMIT_FSIZE=0 and the audit hook; never trust such a run
            return CodeResult("failed", detail=f"code created files {created[:3]}: answer discarded",
                              isolation=isolation)
        if reply.get("ok") and reply.get("answer") is not None:
            return CodeResult("ok", answer=reply["answer"], isolation=isolation)
        return CodeResult("failed", detail=str(reply.get("error") or "no answer"), isolation=isolation)
    except (OSError, ValueError) as err:
        return CodeResult("failed", detail=f"sandbox could not run the code: {err}")
    finally:
        if process is not None:
            if process.poll() is None:  # whatever went wrong here, nothing stays behind
                _end(process, info_read if bwrap else -1)
            for stream in (process.stdin, process.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
        for fd in (info_read, info_write):
            if fd >= 0:
                os.close(fd)


def _end(process: subprocess.Popen, info_fd: int) -> None:
    """Kill a sandboxed program and everything it started. Under bwrap (`info_fd` >= 0) the namespace's init
    goes first; bwrap then reaps it and exits, which is waited for before bwrap itself is killed."""
    if info_fd >= 0:
        _kill_namespace(info_fd)
        try:
            process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    process.wait()


def _exchange(process: subprocess.Popen, data: bytes, deadline_s: float) -> tuple[bytes, str | None]:
    """Send the program and read what comes back, both within the deadline: (output, None), or
    (output so far, `timeout` | `output`) when the deadline passed or the output outgrew its cap
    (`communicate` would buffer whatever a program prints, gigabytes included)."""
    end = time.monotonic() + deadline_s
    out = bytearray()
    pending = memoryview(data)
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    os.set_blocking(process.stdin.fileno(), False)
    selector.register(process.stdin, selectors.EVENT_WRITE)
    try:
        while selector.get_map():
            left = end - time.monotonic()
            if left <= 0:
                return bytes(out), "timeout"
            for key, _ in selector.select(left):
                if key.fileobj is process.stdin:
                    try:
                        pending = pending[os.write(process.stdin.fileno(), pending[:1 << 16]):]
                    except (BrokenPipeError, BlockingIOError) as err:
                        pending = pending if isinstance(err, BlockingIOError) else pending[len(pending):]
                    if not pending:
                        selector.unregister(process.stdin)
                        process.stdin.close()
                    continue
                chunk = os.read(process.stdout.fileno(), 1 << 16)
                if not chunk:
                    selector.unregister(process.stdout)
                out += chunk
                if len(out) > MAX_OUTPUT_BYTES:
                    return bytes(out), "output"
        process.wait(timeout=max(0.01, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        return bytes(out), "timeout"
    finally:
        selector.close()
    return bytes(out), None


def _reply(out: bytes) -> dict:
    """The child's last line, if it is the reply the child writes: a JSON object whose answer and error are
    strings (or null) of bounded length; {} otherwise (a program may write anything to its stdout)."""
    lines = out.decode("utf-8", "replace").strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    well_formed = isinstance(reply, dict) and all(
        isinstance(reply.get(key), (str, type(None))) and len(reply.get(key) or "") <= MAX_ANSWER_CHARS
        for key in ("answer", "error"))
    return reply if well_formed else {}


def _kill_namespace(info_fd: int) -> None:
    """SIGKILL the init of the program's PID namespace, so that the kernel ends every process in it
    before bwrap returns (killing bwrap alone leaves them to die a moment later, on their own)."""
    os.set_blocking(info_fd, False)
    try:
        info = json.loads(os.read(info_fd, 4096).decode() or "{}")
        os.kill(int(info["child-pid"]), signal.SIGKILL)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # bwrap never got that far, or it is already gone


def _signal_name(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            pass
    return f"exit status {returncode}"
