"""The process that runs model-written code:
`python -I -S sandbox_child.py CPU_S MEMORY_MB [MODULES [PATHS [CONVENTION [seccomp|noseccomp]]]] < code`.

Run by path (not imported), with no site-packages; `rewards.sandbox` starts it inside bubblewrap
where it can (its own mount, PID, network, IPC and user namespaces) and plainly where it cannot.
Before the untrusted code runs it, in this order:
1. reads the program, pre-imports the modules arithmetic code uses and the allowed libraries the
   parent names in MODULES (comma-separated, e.g. `mpmath,sympy`) from PATHS (taken off `sys.path`
   again once they are imported);
2. sets resource limits: CPU seconds, address space, no file writes, no core dumps, and
   RLIMIT_NOFILE = 0, so no file, socket or pipe can ever be opened again, even after the program
   closes a descriptor it has;
3. installs the seccomp filter of `sandbox_seccomp.py` (x86_64 Linux): the kernel refuses new
   processes, the network, creating or changing files, signals and other processes' memory;
4. installs an audit hook that refuses the same at the Python level, plus frame, `gc` and code-object
   tricks. The hook keeps no state: it decides from its arguments and the constants of its own code
   object, which Python code cannot change (replacing a function's `__code__` is itself refused).
What this does and does not guarantee is written down in `rewards/README.md`, "Sandbox".

Answer convention: the return value of `simple_math_problem()` if the code defines it, else the
value of a final expression statement, else a variable `result`, else the last printed line.
The study's GRPO reward's conventions (`study_last_line`, `study_function`) are in `_study_answer`;
`tests` (code benchmarks: the program with its tests appended) answers `passed` when the program ran to
its end without an exception.
The result is one JSON line `{"ok": bool, "answer": str|null, "error": str|null, "seccomp": bool}`
on stdout.
"""

import ast
import builtins
import io
import json
import os
import sys

# Pre-imported so that code can `import` them after new file descriptors are forbidden.
import cmath  # noqa: F401
import collections  # noqa: F401
import datetime  # noqa: F401
import decimal  # noqa: F401
import fractions  # noqa: F401
import functools  # noqa: F401
import heapq  # noqa: F401
import itertools  # noqa: F401
import math  # noqa: F401
import operator  # noqa: F401
import random  # noqa: F401
import re  # noqa: F401
import statistics  # noqa: F401
import string  # noqa: F401

import resource

MAX_ANSWER_CHARS = 1000


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us when the process that started us dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)
    except Exception:  # not Linux: the parent's wall-clock kill still applies
        pass


def _import_libraries(modules: list[str], paths: list[str]) -> None:
    """Import the allowed libraries while files can still be opened, then forget where they came from:
    the program gets the modules already in `sys.modules` and nothing else from site-packages."""
    sys.path[:0] = paths
    try:
        for module in modules:
            __import__(module)
    finally:
        del sys.path[:len(paths)]


def _load_seccomp():
    """`sandbox_seccomp.py` from this file's folder (it must be read before files become unopenable);
    None where it cannot be loaded, which the reply reports as `"seccomp": false`."""
    folder = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, folder)
    try:
        import sandbox_seccomp

        return sandbox_seccomp
    except Exception:  # noqa: BLE001 - reported, never fatal
        return None
    finally:
        sys.path.remove(folder)
        sys.modules.pop("sandbox_seccomp", None)


def _used_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _address_space_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) << 10
    return 0


def _limit(cpu_s: int, memory_mb: int) -> None:
    """The program's own budget: `cpu_s` CPU seconds and `memory_mb` of address space beyond what the
    interpreter and the pre-imports already use (numpy alone maps ~140 MB)."""
    cpu = int(_used_cpu_s() + 0.999) + cpu_s
    memory = _address_space_bytes() + (memory_mb << 20)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # ignored for root: the audit hook is the guard
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # No descriptor number is below 0: nothing can be opened, not even after closing 0, 1 or 2.
    resource.setrlimit(resource.RLIMIT_NOFILE, (0, 0))


def _remove_unaudited_calls() -> None:
    """`os.mknod` and `os.mkfifo` create files, and `os.setpriority`, `os.sched_set*`, `os.setpgid` and
    `time.clock_settime` act on other processes or the host, without raising an audit event; the seccomp
    filter refuses them, and where there is no filter they are at least not lying around (a program that
    re-creates the built-in `posix` module gets them back: rewards/README.md, "Sandbox")."""
    import time

    for module in (os, sys.modules.get("posix")):
        for name in ("mknod", "mkfifo", "setpriority", "sched_setaffinity", "sched_setscheduler", "sched_setparam",
                     "setpgid"):
            if hasattr(module, name):
                delattr(module, name)
    for name in ("clock_settime", "clock_settime_ns"):
        if hasattr(time, name):
            delattr(time, name)


def _audit(event, args):
    """Refuse what model code has no business doing. Stateless by design: no global name, no builtin,
    no closure is read here (model code can rebind all of those); every decision comes from the
    event's arguments and literals in this function's code object. An exception raised anywhere in
    here (say, from a poisoned object) refuses the event: the hook fails closed."""
    if event == "open":  # (path, mode, flags): mode is a str for open(), None for os.open()
        mode, flags = args[1], args[2]
        if (mode is not None and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)) or flags & 0o20003103:
            raise PermissionError("sandbox: writing files is not allowed")
        return
    if event == "object.__setattr__" or event == "object.__delattr__":
        if args[1] in ("__code__", "__defaults__", "__kwdefaults__", "__globals__", "__closure__", "__builtins__"):
            raise PermissionError("sandbox: replacing a function's code or defaults is not allowed")
        return
    if event == "sys._getframe":
        # sympy's lambdify (and so nsolve) and numpy's warnings inspect their own frames; the sandbox's
        # own frames (globals named __main__) are refused. Reaching them by `f_back` gains nothing: the
        # hook reads no state there.
        if args[0].f_globals.get("__name__") == "__main__":
            raise PermissionError("sandbox: sys._getframe into the sandbox is not allowed")
        return
    if event.startswith(("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                         "os.forkpty", "os.system", "os.kill", "os.killpg", "os.remove", "os.unlink", "os.rename",
                         "os.replace", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.symlink",
                         "os.link", "os.utime", "os.putenv", "os.unsetenv", "os.chdir", "os.setuid", "os.setgid",
                         "os.setxattr", "os.removexattr", "os.chflags", "os.lchflags", "os.lchmod", "os.lchown",
                         "shutil.", "ctypes.", "resource.setrlimit", "resource.prlimit", "pty.",
                         "signal.pthread_kill", "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.",
                         "telnetlib.", "_winapi", "winreg", "mmap.", "gc.get_objects", "gc.get_referrers",
                         "gc.get_referents", "sys._current_frames", "sys.settrace", "sys.setprofile",
                         "code.__new__", "marshal.load", "cpython.")):
        raise PermissionError("sandbox: " + event + " is not allowed")


def _answer_of(code: str, namespace: dict, printed: io.StringIO) -> object:
    tree = ast.parse(code)
    last_value = None
    has_last_expr = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    if has_last_expr:
        body = ast.Module(body=tree.body[:-1], type_ignores=[])
        exec(compile(body, "<completion>", "exec"), namespace)
        last_value = eval(compile(ast.Expression(tree.body[-1].value), "<completion>", "eval"), namespace)
    else:
        exec(compile(tree, "<completion>", "exec"), namespace)
    if callable(namespace.get("simple_math_problem")):
        return namespace["simple_math_problem"]()
    if has_last_expr and last_value is not None:
        return last_value
    if "result" in namespace:
        return namespace["result"]
    lines = [line for line in printed.getvalue().splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def _study_answer(code: str, convention: str, namespace: dict) -> str:
    """The study's GRPO reward's conventions, as its `exec` calls had them: `study_last_line` runs the
    program, then evaluates its last line of text in the same globals; `study_function` runs it with
    separate locals and calls their `simple_math_problem()`. The answer is `str(value)`, so a `None`
    value is the answer "None" (it does not fall through to the next rule)."""
    if convention == "study_last_line":
        exec(compile(code, "<completion>", "exec"), namespace)
        return str(eval(code.split("\n")[-1], namespace))
    local_namespace: dict = {}
    exec(compile(code, "<completion>", "exec"), namespace, local_namespace)
    return str(local_namespace["simple_math_problem"]())


def _format(value: object) -> str | None:
    if value is None:
        return None
    sympy = sys.modules.get("sympy")
    if sympy is not None and isinstance(value, sympy.Basic) and not value.is_Float:
        # `Rational(1, 2)` -> `\\frac{1}{2}`, `sqrt(2)` -> `\\sqrt{2}`: LaTeX is what math-verify reads
        return str(value) if value.is_Integer else sympy.latex(value)[:MAX_ANSWER_CHARS]
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if value.is_integer():
            return str(int(value))
        return format(value, ".12g")
    return str(value)[:MAX_ANSWER_CHARS]


def main() -> None:
    cpu_s, memory_mb = int(sys.argv[1]), int(sys.argv[2])
    modules = [m for m in (sys.argv[3] if len(sys.argv) > 3 else "").split(",") if m]
    paths = [p for p in (sys.argv[4] if len(sys.argv) > 4 else "").split(os.pathsep) if p]
    convention = sys.argv[5] if len(sys.argv) > 5 else "lab"
    use_seccomp = (sys.argv[6] if len(sys.argv) > 6 else "seccomp") == "seccomp"
    code = sys.stdin.read()
    result_fd = os.dup(1)  # the JSON verdict goes here; the code's own prints are captured
    sys.stdin = io.StringIO()
    printed = io.StringIO()
    _die_with_parent()
    try:
        _import_libraries(modules, paths)
    except BaseException as err:  # noqa: BLE001 - the lab's environment lacks one: the program fails alone
        os.write(result_fd, json.dumps({"ok": False, "answer": None,
                                        "error": f"sandbox could not import {modules}: {err}"}).encode() + b"\n")
        os._exit(0)
    seccomp = _load_seccomp() if use_seccomp else None
    _limit(cpu_s, memory_mb)
    filtered = seccomp is not None and seccomp.install()  # after the limits: it refuses setrlimit
    del seccomp
    _remove_unaudited_calls()
    sys.addaudithook(_audit)
    sys.setrecursionlimit(2000)
    reply: dict = {"ok": False, "answer": None, "error": None, "seccomp": filtered}
    try:
        sys.stdout = printed
        if convention == "tests":  # a program with its tests appended: passing is running to the end
            exec(compile(code, "<completion>", "exec"), {"__name__": "__sandbox__", "__builtins__": builtins})
            reply.update(ok=True, answer="passed")
        elif convention != "lab":  # the study's globals: empty but for the builtins
            answer = _study_answer(code, convention, {"__builtins__": builtins})
            reply.update(ok=True, answer=answer[:MAX_ANSWER_CHARS * 10])
        else:
            value = _answer_of(code, {"__name__": "__sandbox__", "__builtins__": builtins}, printed)
            reply.update(ok=value is not None, answer=_format(value),
                         error=None if value is not None else "code returned nothing")
    except BaseException as err:  # noqa: BLE001 - any failure of the code is a verdict, not a crash
        reply.update(ok=False, error=f"{type(err).__name__}: {str(err)[:300]}")
    finally:
        sys.stdout = sys.__stdout__
    try:
        data = json.dumps(reply).encode()
    except BaseException:  # noqa: BLE001
        data = b'{"ok": false, "answer": null, "error": "unprintable answer", "seccomp": null}'
    os.write(result_fd, data + b"\n")
    os._exit(0)


if __name__ == "__main__":
    main()
