"""Nothing in a completion can hang, crash or pollute the lab: each hostile input comes back
within the deadline, is not `correct`, and leaves no file and no process behind. Also: 8 threads
at once (math-verify raises ValueError off the main thread when called in-process), and a torch
DataLoader worker (a daemonic process cannot have multiprocessing children)."""

import os
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import ISOLATION_MODES, require_isolation

from rewards import Scorer, accuracy_reward, score_samples
from rewards.sandbox import deadline_for

DEADLINE_S = 3.0
SLACK_S = 3.0  # one replacement worker's start-up, on a loaded 2-core machine


def _sandbox_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"sandbox_child.py" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _sandbox_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("moelab-sandbox-*")}


@pytest.fixture(scope="module")
def scorer():
    with Scorer(num_workers=2, deadline_s=DEADLINE_S, code_timeout_s=1.0) as shared:
        shared.score("math", ["1"], ["\\boxed{1}"])  # warm up: start-up is not part of a deadline
        yield shared


@pytest.fixture(scope="module", params=ISOLATION_MODES)
def code_scorer(request):
    """One warm pool per isolation mode (rewards/README.md, "Sandbox"): every hostile program is held
    with bubblewrap, without it (seccomp filter + guard), and by the in-process guard alone."""
    require_isolation(request.param)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOELAB_SANDBOX", request.param)
        with Scorer(num_workers=2, deadline_s=DEADLINE_S, code_timeout_s=1.0) as shared:
            shared.score("math", ["1"], ["\\boxed{1}"])  # warm up: start-up is not part of a deadline
            yield shared


NESTED = "\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}"
HOSTILE_TEXT = {
    "nested braces": NESTED,
    "unbalanced braces": "\\boxed{" * 50_000,
    "braces without a box": "{" * 200_000 + "x" + "}" * 200_000,
    "tower of exponents": "so \\boxed{9^{9^{9^{9^{9}}}}}",
    "tower without braces": "the answer is $10^{10^{10}}$",
    "1 MB of prose": "blah " * 200_000 + "\\boxed{8}",
    "1 MB of digits": "9" * 1_000_000,
    "1 MB of latex": "\\frac{1}{" * 100_000,
    "1 MB of whitespace": " " * 1_000_000 + "8",
    "repeated anchors": "Final Answer: The final answer is " * 30_000 + "#### " * 50_000,
}


@pytest.mark.parametrize("name", list(HOSTILE_TEXT))
def test_hostile_text_returns_within_deadline(scorer, name):
    for task in ("math", "gsm8k"):
        start = time.monotonic()
        verdict = scorer.score(task, ["7"], [HOSTILE_TEXT[name]])[0]
        elapsed = time.monotonic() - start
        assert elapsed < DEADLINE_S + SLACK_S, (task, elapsed, verdict)
        assert verdict.status != "correct" and verdict.status in {"wrong", "no_answer", "timeout", "error"}


HOSTILE_BODIES = {  # bodies of `simple_math_problem()`, one statement per list item
    "loops forever": ["while True:", "    pass"],
    "sleeps": ["import time", "time.sleep(600)", "return 7"],
    "allocates without bound": ["x = []", "while True:", "    x.append(' ' * 10**7)"],
    "writes a file here": ["open('pwned.txt', 'w').write('x')", "return 7"],
    "writes a file in /tmp": ["with open('{marker}', 'w') as f:", "    f.write('x')", "return 7"],
    "os.system": ["import os", "os.system('touch {marker}')", "return 7"],
    "subprocess": ["import subprocess", "subprocess.run(['touch', '{marker}'])", "return 7"],
    "fork bomb": ["import os", "while True:", "    os.fork()"],
    "socket": ["import socket", "s = socket.socket()", "s.connect(('127.0.0.1', 22))", "return 7"],
    "raw _socket": ["import _socket", "_socket.socket()", "return 7"],
    "raises the limits": ["import resource", "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))", "return 7"],
    "deep recursion": ["def f(n):", "    return f(n + 1)", "return f(0)"],
    "huge integer": ["return 10 ** 100000"],
    "os.open for writing": ["import os", "os.open('{marker}', os.O_WRONLY | os.O_CREAT)", "return 7"],
    "ctypes libc system": ["import ctypes", "ctypes.CDLL(None).system(b'touch {marker}')", "return 7"],
    "closes stdin, then writes": ["import os", "os.close(0)", "open('{marker}', 'w').write('x')", "return 7"],
    "frame of the sandbox": ["import sys", "frame = sys._getframe(1)", "return 7"],
    # sympy's and numpy's own file and process helpers (both importable since issue #18)
    "numpy.save": ["import numpy as np", "np.save('{marker}', np.arange(3))", "return 7"],
    "numpy tofile": ["import numpy as np", "np.arange(3).tofile('{marker}')", "return 7"],
    "numpy.memmap": ["import numpy as np", "np.memmap('{marker}', dtype='uint8', mode='w+', shape=(8,))",
                     "return 7"],
    "numpy.savetxt here": ["import numpy as np", "np.savetxt('pwned.txt', [1.0])", "return 7"],
    "numpy ctypeslib": ["import numpy as np", "np.ctypeslib.load_library('libc.so.6', '/lib/x86_64-linux-gnu')",
                        "return 7"],
    "numpy allocates without bound": ["import numpy as np", "return int(np.ones(10**10).sum())"],
    "sympy preview": ["from sympy import preview, Symbol", "preview(Symbol('x'), viewer='file', filename='{marker}')",
                      "return 7"],
    "sympify runs os.system": ["from sympy import sympify", "sympify(\"__import__('os').system('touch {marker}')\")",
                               "return 7"],
    "parse_expr writes a file": ["from sympy.parsing.sympy_parser import parse_expr",
                                 "parse_expr(\"open('{marker}', 'w').write('x')\")", "return 7"],
    "lambdify runs a process": ["from sympy import lambdify",
                                "lambdify([], \"__import__('subprocess').run(['touch', '{marker}'])\")()",
                                "return 7"],
    "sympy autowrap": ["from sympy import Symbol", "from sympy.utilities.autowrap import autowrap",
                       "autowrap(Symbol('x') + 1, tempdir='{marker}')", "return 7"],
    "sympy factors for ever": ["from sympy import factorint", "return len(factorint(2**512 + 1))"],
    "site-packages back on sys.path": ["import sys, os, sympy",
                                       "sys.path.insert(0, os.path.dirname(os.path.dirname(sympy.__file__)))",
                                       "import torch", "return 7"],
}
def as_function(body: list[str]) -> str:
    """`body` as the TinyGSM answer convention: `def simple_math_problem(): ...`."""
    return "def simple_math_problem():\n" + "".join(f"    {line}\n" for line in body)


HOSTILE_CODE = {name: as_function(body) for name, body in HOSTILE_BODIES.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HOSTILE_CODE))
def test_hostile_code_is_contained(code_scorer, name, tmp_path):
    marker = tmp_path / "created_by_model_code"
    code = HOSTILE_CODE[name].replace("{marker}", str(marker))
    dirs_before = _sandbox_dirs()
    start = time.monotonic()
    verdict = code_scorer.score("gsm8k", ["#### 7"], [code], execute_code=True)[0]
    elapsed = time.monotonic() - start
    assert elapsed < max(DEADLINE_S, deadline_for(code, 1.0)) + 1.0 + SLACK_S, (elapsed, verdict)
    assert verdict.status in {"no_answer", "timeout"}, verdict
    assert not marker.exists() and not Path("pwned.txt").exists()
    assert _sandbox_dirs() <= dirs_before
    assert _sandbox_processes() == []


NOT_THE_ANSWER = {  # programs that answer something, but never 7
    "always-equal object": ["class Anything:", "    def __eq__(self, other):", "        return True",
                            "return Anything()"],
    "a free sympy symbol": ["from sympy import Symbol", "return Symbol('x')"],
    "sympy infinity": ["from sympy import oo", "return oo"],
    "sympy nan": ["from sympy import nan", "return nan"],
    "numpy nan": ["import numpy as np", "return np.nan"],
    "a numpy array holding the answer and more": ["import numpy as np", "return np.array([7, 8])"],
}


@pytest.mark.parametrize("name", list(NOT_THE_ANSWER))
def test_answers_that_are_not_the_gold_never_score_correct(code_scorer, name):
    code = as_function(NOT_THE_ANSWER[name])
    for task, gold in (("gsm8k", "#### 7"), ("math", "7")):
        verdict = code_scorer.score(task, [gold], [code], execute_code=True)[0]
        assert verdict.status in {"wrong", "no_answer"}, (task, verdict)


def test_a_missed_deadline_kills_and_replaces_the_worker(scorer):
    # 10^{10^{10}} at a 1 s deadline: math-verify's own 1 s alarm may not get there first.
    verdicts = scorer.score("math", ["1", "2"], ["\\boxed{9^{9^{9^{9^{9}}}}}", "\\boxed{2}"], deadline_s=1.0)
    assert verdicts[0].status != "correct" and verdicts[1].status == "correct"
    assert scorer.score("math", ["\\frac12"], ["\\boxed{0.5}"])[0].status == "correct"  # pool still works


def test_eight_threads_at_once():
    golds = ["\\frac{1}{3}", "#### 18", "\\sqrt{2}", "(1,2]"]
    completions = ["\\boxed{\\frac{2}{6}}", "#### 18", "\\boxed{2^{1/2}}", "\\boxed{[1,2]}"]
    results, errors = {}, []

    def call(thread: int) -> None:
        try:
            results[thread] = accuracy_reward(prompts=["q"] * 4, completions=completions, solution=golds)
        except BaseException as err:  # noqa: BLE001 - the test reports it
            errors.append(err)

    threads = [threading.Thread(target=call, args=(t,)) for t in range(8)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a reward call hung"
    assert errors == []
    assert all(results[t] == [1.0, 1.0, 1.0, 0.0] for t in range(8)), results
    assert time.monotonic() - start < 60


class _ScoringDataset:
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        verdicts = score_samples("math", ["\\frac12", "3"], ["\\boxed{0.5}", "\\boxed{9^{9^{9^{9^{9}}}}}"],
                                 deadline_s=2.0, num_workers=1)
        return {"statuses": ",".join(v.status for v in verdicts), "pid": os.getpid()}


@pytest.mark.slow
def test_inside_a_dataloader_worker():
    torch_data = pytest.importorskip("torch.utils.data")
    loader = torch_data.DataLoader(_ScoringDataset(), batch_size=None, num_workers=1, timeout=120)
    items = list(loader)
    assert len(items) == 2
    for item in items:
        first, second = item["statuses"].split(",")
        assert first == "correct" and second != "correct"
        assert item["pid"] != os.getpid()  # it really ran in the worker process


def test_closing_a_scorer_leaves_no_process():
    with Scorer(num_workers=2, deadline_s=DEADLINE_S) as scorer:
        scorer.score("math", ["\\sqrt2", "\\sqrt3"], ["\\boxed{\\sqrt2}", "\\boxed{2}"])
        pids = [worker.process.pid for worker in scorer.pool._free]
        assert len(pids) == 2
        scorer.score("math", ["\\sqrt5"], ["\\boxed{\\sqrt5}"])  # reused: no new processes
        assert sorted(w.process.pid for w in scorer.pool._free) == sorted(pids)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()


@pytest.mark.slow
def test_a_worker_killed_from_outside_is_replaced():
    import signal

    with Scorer(num_workers=1, deadline_s=DEADLINE_S) as scorer:
        scorer.score("math", ["\\sqrt2"], ["\\boxed{\\sqrt2}"])
        (worker,) = scorer.pool._free
        os.kill(worker.process.pid, signal.SIGKILL)  # e.g. the kernel's OOM killer
        worker.process.wait()
        first = scorer.score("math", ["\\sqrt3"], ["\\boxed{\\sqrt3}"])[0]
        assert first.status in {"correct", "error"}
        assert scorer.score("math", ["\\sqrt5"], ["\\boxed{\\sqrt5}"])[0].status == "correct"
