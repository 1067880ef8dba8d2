"""The code sandbox as a boundary (issue #26): each escape that got through the old sandbox, tried again
as a hostile program, under bubblewrap (`MOELAB_SANDBOX=bwrap`) and in the fallback without it
(`MOELAB_SANDBOX=none`: limits, seccomp filter, audit hook).

Every escape is first run *without* any sandbox, as a plain Python process, to show that the probe does
the harm it claims (so a containment test can fail); then inside the sandbox, where it must leave no
trace: no file created, changed or removed outside, no connection to a loopback listener, no process
signalled, no secret or environment in the answer, no stolen gold scored correct. Every program first
tries to disarm the in-process guard (its block lists through `__main__`, frames, tracebacks, generator
frames and `gc`; its code object; poisoned builtins), so what is tested is what holds after that.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ISOLATION_MODES, expected_isolation, require_isolation

from rewards import Scorer
from rewards.sandbox import run_code

REPO = Path(__file__).resolve().parents[1]
SECRET = "moelab-secret-4F2A9"


@pytest.fixture(params=ISOLATION_MODES)
def mode(request, monkeypatch):
    require_isolation(request.param)
    monkeypatch.setenv("MOELAB_SANDBOX", request.param)
    monkeypatch.setenv("MOELAB_TEST_SECRET", SECRET)
    return request.param


DISARM = '''
import sys, builtins
for _module in ("gc", "os", "posix", "socket", "_socket", "_posixsubprocess"):  # before builtins are poisoned
    try:
        __import__(_module)
    except BaseException:
        pass
def _disarm():
    nop = (lambda event, args: None).__code__
    def clear(namespace):
        for key in list(namespace):
            if key.startswith("_BLOCKED") or key == "_WRITE_FLAGS":
                namespace[key] = ()
        hook = namespace.get("_audit")
        if hook is not None:
            hook.__code__ = nop
    attempts = [
        lambda: clear(vars(sys.modules["__main__"])),
        lambda: walk(sys._getframe(0)),
        lambda: walk(traceback_frame()),
        lambda: walk((i for i in [0]).gi_frame),
        lambda: [clear(o.__globals__) for o in __import__("gc").get_objects() if type(o).__name__ == "function"
                 and o.__name__ == "_audit"],
    ]
    def walk(frame):
        while frame is not None:
            clear(frame.f_globals)
            frame = frame.f_back
    def traceback_frame():
        try:
            raise ValueError
        except ValueError as err:
            return err.__traceback__.tb_frame
    for attempt in attempts:
        try:
            attempt()
        except BaseException:
            pass
    real_isinstance = builtins.isinstance
    builtins.isinstance = lambda obj, kind: False if kind is str else real_isinstance(obj, kind)
_disarm()
'''

# name -> program (after DISARM); {host}: a folder outside the sandbox, {port}: a loopback listener,
# {pid}: a process of the host's, {python}: an interpreter that exists inside and outside the sandbox.
# Each sets `result`.
ESCAPES = {
    "mknod outside": "import os\nos.mknod('{host}/node')\nresult = 1",
    "mkfifo outside": "import os\nos.mkfifo('{host}/fifo')\nresult = 1",
    "mknod through a re-created posix": ("import _imp, sys\nposix = _imp.create_builtin(type(sys.__spec__)('posix', None))\n"
                                         "posix.mknod('{host}/node')\nresult = 1"),
    "setxattr outside": "import os\nos.setxattr('{host}/victim.txt', 'user.pwned', b'1')\nresult = 1",
    "writes a file outside": "open('{host}/victim.txt', 'w').write('pwned')\nresult = 1",
    "empties a file": "import os\nos.truncate('{host}/victim.txt', 0)\nresult = 1",
    "symlinks": "import os\nos.symlink('/etc/passwd', '{host}/link')\nresult = 1",
    "removes a file": "import posix\nposix.unlink('{host}/victim.txt')\nresult = 1",
    "renames a file": "import os\nos.rename('{host}/victim.txt', '{host}/moved.txt')\nresult = 1",
    "makes a directory": "import os\nos.mkdir('{host}/made')\nresult = 1",
    "hard link": "import os\nos.link('{host}/victim.txt', '{host}/hard')\nresult = 1",
    "chmod": "import os\nos.chmod('{host}/victim.txt', 0o777)\nresult = 1",
    "utime": "import os\nos.utime('{host}/victim.txt', (0, 0))\nresult = 1",
    "closes stdin, reads a secret": "import os\nos.close(0)\nresult = open('{host}/secret.txt').read()",
    "closes 0-2, reads a secret": "import os\nfor fd in (0, 1, 2):\n    os.close(fd)\n"
                                  "result = open('{host}/secret.txt').read()",
    "parent's environment": "import os\nresult = open(f'/proc/{{os.getppid()}}/environ').read()",
    "first process's environment": "result = open('/proc/1/environ').read()",
    "own environment": "import posix\nresult = repr(posix.environ)",
    "socket to loopback": "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', {port}))\nresult = 1",
    "raw _socket": "import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))\nresult = 1",
    "fork_exec a process": (
        "import os, _posixsubprocess\n"
        "argv = [b'{python}', b'-c', b'import socket; socket.create_connection((\"127.0.0.1\", {port}))']\n"
        "r, w = os.pipe()\n"
        "common = (argv, [argv[0]], True, (), None, None, -1, -1, -1, -1, -1, -1, r, w, True, False, -1, -1, None, -1)\n"
        "for tail in ((-1, None, False), (-1, None), (None,)):  # the signature differs between 3.11 builds\n"
        "    try:\n        pid = _posixsubprocess.fork_exec(*common, *tail)\n        break\n"
        "    except TypeError:\n        pass\n"
        "os.waitpid(pid, 0)\nresult = 1"),
    "fork and exec": ("import os\npid = os.fork()\nif pid == 0:\n    os.execv('{python}', ['python3', '-c', "
                      "'import socket; socket.create_connection((\"127.0.0.1\", {port}))'])\n"
                      "os.waitpid(pid, 0)\nresult = 1"),
    "os.system": "import os\nos.system(\"{python} -c 'open(\\\"{host}/sys\\\", \\\"w\\\")'\")\nresult = 1",
    "signals a host process": "import os\nos.kill({pid}, 9)\nresult = 1",
    "renices a host process": "import os\nos.setpriority(os.PRIO_PROCESS, {pid}, 19)\nresult = 1",
    "pins a host process to one core": "import os\nos.sched_setaffinity({pid}, {{0}})\nresult = 1",
}


def _host(tmp_path: Path) -> Path:
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.txt").write_text(SECRET)
    (host / "victim.txt").write_text("untouched")
    return host


def _state(host: Path) -> dict:
    """Everything a program could change in the folder: names, kinds, sizes, modes, times, contents, xattrs."""
    state = {}
    for path in sorted(host.rglob("*")):
        info = path.lstat()
        xattrs = sorted(os.listxattr(path, follow_symlinks=False)) if hasattr(os, "listxattr") else []
        state[path.name] = (info.st_mode, info.st_size, info.st_mtime_ns, xattrs,
                            path.read_bytes() if path.is_file() and not path.is_symlink() else None)
    return state


class Listener:
    """A loopback TCP listener that reports whether anything connected."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(8)
        self.socket.settimeout(0.5)
        self.port = self.socket.getsockname()[1]

    def connected(self) -> bool:
        try:
            connection, _ = self.socket.accept()
        except (TimeoutError, OSError):
            return False
        connection.close()
        return True

    def close(self):
        self.socket.close()


@pytest.fixture
def target():
    """A process of the host's that a program may try to kill."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    process.scheduling = (os.getpriority(os.PRIO_PROCESS, process.pid), os.sched_getaffinity(process.pid))
    yield process
    process.kill()
    process.wait()


def _program(name: str, host: Path, port: int, pid: int) -> str:
    python = os.path.realpath(sys.executable)  # the sandbox mounts the interpreter it runs
    return DISARM + ESCAPES[name].format(host=host, port=port, pid=pid, python=python) + "\n"


def _harm(host: Path, before: dict, listener: Listener, target, answer: str | None) -> list[str]:
    harm = []
    if _state(host) != before:
        harm.append("changed the host folder")
    if listener.connected():
        harm.append("connected to the loopback listener")
    if target.poll() is not None:
        harm.append("killed a host process")
    elif (os.getpriority(os.PRIO_PROCESS, target.pid), os.sched_getaffinity(target.pid)) != target.scheduling:
        harm.append("changed a host process's scheduling")
    if answer and SECRET in answer:
        harm.append("read the secret")
    return harm


# Both runs start from a launcher process whose own environment holds the secret, as a checker worker's
# would hold a user's tokens: the program's parent is that launcher (plainly, or through the sandbox).
PLAIN = ("import os, subprocess, sys\n_out = os.dup(1)\n"  # the program may close stdout
         "{program}\nos.write(_out, repr(result).encode())\n")
LAUNCH_PLAIN = "import subprocess, sys; subprocess.run([sys.executable, '-I', '-c', sys.stdin.read()])"
LAUNCH_SANDBOX = ("import json, sys; from rewards.sandbox import run_code; "
                  "print(json.dumps(run_code(sys.stdin.read(), timeout_s=3.0).__dict__))")


def _launch(launcher: str, program: str, cwd: Path, mode: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOELAB_TEST_SECRET": SECRET, "PYTHONPATH": str(REPO)}
    if mode is not None:
        env["MOELAB_SANDBOX"] = mode
    return subprocess.run([sys.executable, "-c", launcher], input=program, capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ESCAPES))
def test_each_escape_does_harm_without_a_sandbox(name, tmp_path, target):
    host, listener = _host(tmp_path), Listener()
    before = _state(host)
    try:
        program = PLAIN.format(program=_program(name, host, listener.port, target.pid))
        done = _launch(LAUNCH_PLAIN, program, tmp_path)
        if name == "first process's environment" and SECRET not in done.stdout:
            pytest.skip("the control cannot show it: this machine's PID 1 is not a process of the tests")
        harm = _harm(host, before, listener, target, done.stdout)
    finally:
        listener.close()
    assert harm, (name, done.returncode, done.stdout[-300:], done.stderr[-500:])


# What the in-process guard alone (no bwrap, no seccomp filter: `guard`) cannot hold, and why.
GUARD_CANNOT_HOLD = {
    "mknod through a re-created posix": "os.mknod raises no audit event; the guard removes it from os and posix, "
                                        "but re-creating the built-in posix module brings it back; only the "
                                        "seccomp filter (or bwrap's read-only mounts) stops it",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ESCAPES))
def test_each_escape_is_contained(name, mode, tmp_path, target):
    if expected_isolation(mode) == "none" and name in GUARD_CANNOT_HOLD:  # guard, or no filter for this machine
        pytest.skip(f"the in-process guard alone cannot hold this: {GUARD_CANNOT_HOLD[name]}")
    host, listener = _host(tmp_path), Listener()
    before = _state(host)
    try:
        done = _launch(LAUNCH_SANDBOX, _program(name, host, listener.port, target.pid), tmp_path, mode)
        assert done.returncode == 0, done.stderr[-1000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        harm = _harm(host, before, listener, target, result["answer"])
    finally:
        listener.close()
    assert harm == [], (name, result)
    assert result["status"] in {"failed", "ok"}, result  # refused (failed) or an answer that is harmless
    assert result["isolation"] == expected_isolation(mode), result


def test_the_guard_cannot_be_disarmed(mode):
    """After every disarming attempt, the hook still refuses what it refused before."""
    result = run_code(DISARM + "import os\nos.system('true')\nresult = 1")
    assert result.status == "failed" and "os.system is not allowed" in result.detail, result
    code_swap = "f = lambda: 1\nf.__code__ = (lambda: 2).__code__\nresult = f()"
    assert "replacing a function's code" in run_code(code_swap).detail
    crafted = "c = (lambda: 0).__code__.replace(co_code=b'\\x64\\xff\\x53\\x00')\nresult = 1"
    assert run_code(crafted).detail.startswith("PermissionError: sandbox: code.__new__")


@pytest.mark.slow
def test_a_crash_is_an_error(mode):
    crash = "import sys\nsys.setrecursionlimit(10**7)\nl = []\nfor _ in range(10**6):\n    l = [l]\nresult = repr(l)"
    result = run_code(crash, timeout_s=3.0)
    assert result.status == "crashed" and "SIGSEGV" in result.detail, result
    with Scorer(num_workers=1, code_timeout_s=3.0) as scorer:
        [verdict] = scorer.score("gsm8k", ["#### 7"], [f"<llm-code>\n{crash}\n</llm-code>"], execute_code=True)
        assert verdict.status == "error" and "SIGSEGV" in verdict.detail, verdict
        [verdict] = scorer.score("gsm8k", ["#### 7"], [f"<llm-code>\n{crash}\n</llm-code>"], rule="study_grpo")
        assert verdict.status == "error", verdict


def test_the_child_sees_no_parent_and_no_files_but_its_own(mode):
    probe = ("import os\nresult = ' '.join([str(os.getppid()), str(os.path.exists('" + str(REPO) + "')), "
             "str(os.path.exists('/proc/1/cwd/" + str(REPO).lstrip("/") + "'))])")
    result = run_code(probe)
    ppid, repo_visible, through_proc = result.answer.split()
    if mode == "bwrap":  # its own PID namespace (the parent it sees is bwrap's init) and mount namespace
        assert (ppid, repo_visible, through_proc) == ("1", "False", "False"), result
    else:
        assert int(ppid) == os.getpid()  # the fallback hides nothing by namespaces: written in the README


# ------------------------------------------------------------------- the gold, by the real command line

STEAL = '''
import os, json
def steal():
    pid = os.getppid()
    for _ in range(8):
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
        except Exception:
            return None
        if b"--in" in args:
            path = args[args.index(b"--in") + 1].decode()
            full = path if path.startswith("/") else f"/proc/{pid}/cwd/{path}"
            for line in open(full):
                if "ROW-MARKER-17" in line:
                    return json.loads(line)["gold"].split("####")[-1].strip()
        stat = open(f"/proc/{pid}/stat").read()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return None
result = steal()
'''


def test_stealing_the_gold_works_without_a_sandbox(tmp_path):
    """The control: a plain interpreter whose ancestor was started with `--in ROWS.jsonl` finds its row."""
    (tmp_path / "rows.jsonl").write_text(json.dumps({"gold": "#### 4817", "completion": "ROW-MARKER-17"}) + "\n")
    code = STEAL + "print(result)\n"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {code!r}])"
    done = subprocess.run([sys.executable, "-c", parent, "--in", "rows.jsonl"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=30)
    assert done.stdout.strip() == "4817", done.stderr[-500:]


@pytest.mark.slow
def test_a_stolen_gold_never_scores_correct(mode, tmp_path):
    """`moelab score --in` on a program that walks up to that command and reads its own row's gold."""
    program = DISARM + STEAL
    rows = [{"gold": "#### 4817", "completion": f"<llm-code>\n{program}\n</llm-code>"},
            {"gold": "#### 4817", "completion": "def simple_math_problem():\n    return 4817\n"}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "moelab.cli", "score", "--task", "gsm8k", "--in", "rows.jsonl",
                           "--out", "scored.jsonl", "execute_code=true"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert scored[0]["status"] != "correct" and scored[0]["pred"] != "4817", scored[0]
    assert scored[1]["status"] == "correct"  # the honest program next to it still scores
    if mode != "bwrap":
        assert "without OS isolation" in done.stderr and done.stderr.count("without OS isolation") == 1
    else:
        assert "without OS isolation" not in done.stderr


def test_the_grpo_reward_uses_the_same_sandbox(mode, tmp_path):
    """GRPO's accuracy reward (TRL reward function) executes programs through the same sandbox."""
    from rewards import get_reward_funcs

    [reward] = get_reward_funcs(["accuracy"], options={"accuracy": {"execute_code": True}})
    host = _host(tmp_path)
    before = _state(host)
    hostile = "<llm-code>\n" + DISARM + ESCAPES["writes a file outside"].format(host=host) + "\n7\n</llm-code>"
    honest = "def simple_math_problem():\n    return 3 + 4\n"
    rewards = reward(prompts=["q", "q"], completions=[hostile, honest], gold=["#### 7", "#### 7"],
                     task=["gsm8k", "gsm8k"])
    assert rewards == [0.0, 1.0] and _state(host) == before


def test_the_filter_table_matches_the_kernel_headers():
    from rewards.sandbox_seccomp import X86_64

    headers = [Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"), Path("/usr/include/asm/unistd_64.h")]
    header = next((path for path in headers if path.exists()), None)
    if header is None:
        pytest.skip("no x86_64 kernel headers installed to check the system-call table against")
    numbers = {name: int(number) for name, number in re.findall(r"#define __NR_(\w+) (\d+)", header.read_text())}
    assert {name: number for name, number in X86_64.items() if numbers.get(name, number) != number} == {}
    newest = max(numbers.values())
    assert all(name in numbers or number > newest for name, number in X86_64.items())  # newer than the headers


def test_a_flood_of_output_is_cut_not_buffered(mode):
    """A program that prints gigabytes is killed once it passes the cap (it used to fill the parent's memory)."""
    from rewards.sandbox import MAX_OUTPUT_BYTES

    flood = "import os\nfor _ in range(3000):\n    os.write(1, b'x' * (1 << 20))\nresult = 1"
    result = run_code(flood, timeout_s=3.0)
    assert result.status == "failed" and f"more than {MAX_OUTPUT_BYTES} bytes" in result.detail, result


@pytest.mark.slow
def test_a_forged_reply_is_not_trusted(mode):
    """A program can write a reply of its own and exit; the parent accepts only a well-formed one, reports the
    isolation it asked for, and a malformed one cannot break a scoring batch."""
    forged = ("import os\nos.write(3, b'{\"ok\": true, \"answer\": 7, \"seccomp\": true}\\n')\nos._exit(0)")
    result = run_code(forged)
    assert result.status == "failed" and result.isolation in ("bwrap", "none"), result  # never claims seccomp
    with Scorer(num_workers=1) as scorer:
        [verdict] = scorer.score("gsm8k", ["#### 7"], [f"<llm-code>\n{forged}\n</llm-code>"], execute_code=True)
    assert verdict.status == "no_answer", verdict
