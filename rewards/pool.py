"""A pool of `rewards.worker` processes that holds every item to a hard deadline.

Why not `multiprocessing.Pool` or `concurrent.futures`: a DataLoader worker (daemonic) may not
start them; `future.result(timeout)` gives up waiting but leaves the stuck process running (and
a thread-pool `shutdown` then blocks: AReaL #1426). Here each worker is a `subprocess.Popen`
child in its own process group; the calling thread multiplexes the workers it checked out with
`poll()`, sends batches, takes one reply per item, and when an item passes its deadline it
SIGKILLs the worker's whole group (sandboxed programs included), marks that item `timeout`,
starts a replacement and re-queues the rest of the batch. A worker that dies (e.g. its
address-space limit) costs only the item it was on (`error`).

Thread-safe: threads check workers out and in; the pool grows lazily up to `max_workers` and is
reused across calls, so repeated scoring does not pay the start-up (math-verify's import) again.
After `fork` (a DataLoader worker) the child notices the new pid and starts its own workers.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from rewards.worker import HEADER, encode_frame

_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
START_TIMEOUT_S = 60.0
MAX_START_FAILURES = 3


# antlr4 4.11, apart from the environment's 4.13 (installed by the Makefile): sympy's `parse_latex`, which the
# study's Minerva `is_equiv` calls, demands 4.11, and math-verify parses worse with it (rewards/README.md).
ANTLR411_DIR = Path(os.environ.get("MOELAB_ANTLR411_DIR", str(Path(sys.prefix) / "antlr4-4.11")))


def antlr411_path() -> str:
    """The antlr4 4.11 folder the study-rule checkers put first on their path; a UserError when missing."""
    if not (ANTLR411_DIR / "antlr4").is_dir():
        from core.errors import UserError

        raise UserError(f"rule=study needs antlr4-python3-runtime 4.11 in {ANTLR411_DIR} (sympy's LaTeX parser "
                        f"demands it): run `make install`, or `pip install --no-deps --target {ANTLR411_DIR} "
                        f"antlr4-python3-runtime==4.11.0`, or set MOELAB_ANTLR411_DIR")
    return str(ANTLR411_DIR)


class _Worker:
    def __init__(self, memory_mb: int, first_paths: tuple[str, ...] = ()):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (*first_paths, _PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        env["MOELAB_REWARD_WORKER_MEMORY_MB"] = str(memory_mb)
        env.setdefault("OMP_NUM_THREADS", "1")
        self.process = subprocess.Popen([sys.executable, "-m", "rewards.worker"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                        start_new_session=True, close_fds=True)
        self.fd = self.process.stdout.fileno()
        self.buffer = bytearray()
        self.ready = False
        self.started = time.monotonic()
        self.inflight: deque[int] = deque()
        self.deadline = float("inf")

    def send(self, message: object) -> None:
        self.process.stdin.write(encode_frame(message))
        self.process.stdin.flush()

    def read(self) -> list | None:
        """Complete messages available now; None when the worker has exited."""
        import pickle

        data = os.read(self.fd, 1 << 20)
        if not data:
            return None
        self.buffer += data
        messages = []
        while len(self.buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self.buffer)
            if len(self.buffer) < HEADER.size + size:
                break
            messages.append(pickle.loads(bytes(self.buffer[HEADER.size:HEADER.size + size])))
            del self.buffer[:HEADER.size + size]
        return messages

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the group: sandboxed programs die with it
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self.forget()

    def forget(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class WorkerPool:
    """Checker processes shared by every call in this process. `run(items)` -> one dict per item."""

    def __init__(self, max_workers: int | None = None, memory_mb: int = 3072, first_paths: tuple[str, ...] = ()):
        self.max_workers = max(1, max_workers or os.cpu_count() or 1)
        self.memory_mb = memory_mb
        self.first_paths = tuple(first_paths)  # put before everything on the workers' path (antlr4 4.11)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._free: list[_Worker] = []
        self._total = 0
        self._closed = False

    def _own_process(self) -> None:
        if os.getpid() != self._pid:  # forked (DataLoader worker): the parent's workers are not ours
            for worker in self._free:
                worker.forget()
            self._reset()

    def checkout(self, wanted: int) -> list[_Worker]:
        self._own_process()
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("reward worker pool is closed")
                taken = self._free[:wanted]
                del self._free[:wanted]
                while len(taken) < wanted and self._total < self.max_workers:
                    taken.append(_Worker(self.memory_mb, self.first_paths))
                    self._total += 1
                if taken:
                    return taken
                self._cond.wait()

    def checkin(self, workers: list[_Worker]) -> None:
        with self._cond:
            if self._closed or os.getpid() != self._pid:
                for worker in workers:
                    worker.kill()
                return
            self._free.extend(workers)
            self._cond.notify_all()

    def close(self) -> None:
        """Stop every idle worker (workers in use stop when their call returns them)."""
        if os.getpid() != self._pid:
            return
        with self._cond:
            self._closed = True
            workers, self._free = self._free, []
            self._cond.notify_all()
        for worker in workers:
            try:
                worker.send(("quit",))
                worker.process.wait(timeout=1)
            except (OSError, subprocess.TimeoutExpired):
                pass
            worker.kill()

    def run(self, items: list[dict], num_workers: int | None = None,
            progress: Callable[[int], None] | None = None) -> list[dict]:
        """Process `items` (each with `deadline_s`) on up to `num_workers` workers, in parallel.

        Never raises for an item's sake and never waits past an item's deadline plus start-up.
        """
        if not items:
            return []
        wanted = min(num_workers or self.max_workers, self.max_workers, len(items))
        job = _Job(items, self.checkout(wanted), self.memory_mb, progress, self.first_paths)
        try:
            job.drive()
        finally:
            broken = [w for w in job.workers if w.inflight]  # left mid-batch by an exception: replies pending
            for worker in broken:
                worker.kill()
            with self._cond:
                self._total -= len(broken)
            self.checkin([w for w in job.workers if not w.inflight])
        return job.final_results()


class _Job:
    """One `run` call: a queue of items, the workers it checked out, one result slot per item."""

    def __init__(self, items: list[dict], workers: list[_Worker], memory_mb: int,
                 progress: Callable[[int], None] | None, first_paths: tuple[str, ...] = ()):
        self.items, self.workers, self.memory_mb, self.progress = items, workers, memory_mb, progress
        self.first_paths = first_paths
        self.results: list[dict | None] = [None] * len(items)
        self.pending = deque(range(len(items)))
        self.batch = max(1, min(64, len(items) // (len(workers) * 4)))
        self.start_failures = 0

    def drive(self) -> None:
        while self.pending or any(w.inflight for w in self.workers):
            self.dispatch()
            self.collect()
            self.enforce_deadlines()
            if self.start_failures >= MAX_START_FAILURES:
                return

    def dispatch(self) -> None:
        """Give each idle, ready worker the next batch; its first item's clock starts now."""
        for position, worker in enumerate(self.workers):
            if not (worker.ready and not worker.inflight and self.pending):
                continue
            # batches shrink as the queue drains, so no worker idles while another ends a long batch
            size = min(self.batch, -(-len(self.pending) // (2 * len(self.workers))))
            chunk = [self.pending.popleft() for _ in range(size)]
            try:
                worker.send(("batch", [(i, self.items[i]) for i in chunk]))
            except OSError:
                self.pending.extendleft(reversed(chunk))
                self.replace(position)
                continue
            worker.inflight.extend(chunk)
            worker.deadline = time.monotonic() + self.items[chunk[0]]["deadline_s"]

    def collect(self) -> None:
        """Wait until a reply arrives or the nearest deadline passes; take the replies."""
        waiting = {w.fd: (p, w) for p, w in enumerate(self.workers) if w.inflight or not w.ready}
        if not waiting:
            return
        nearest = min(w.deadline if w.ready else w.started + START_TIMEOUT_S for _, w in waiting.values())
        poller = select.poll()  # not select(): a trainer may hold more than 1,024 descriptors
        for fd in waiting:
            poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        for fd, _ in poller.poll(max(0.0, nearest - time.monotonic()) * 1000 + 1):
            position, worker = waiting[fd]
            messages = worker.read()
            if messages is None:  # the worker died
                if worker.ready and worker.inflight:
                    self.finish(worker.inflight.popleft(), {"status": "error", "detail": (
                        f"checker process died (address-space limit {self.memory_mb} MB?)")})
                    self.pending.extendleft(reversed(worker.inflight))
                    worker.inflight.clear()
                else:
                    self.start_failures += 1
                self.replace(position)
                continue
            for message in messages:
                if message[0] == "ready":
                    worker.ready = True
                    self.start_failures = 0
                elif message[0] == "result" and message[1] in worker.inflight:
                    worker.inflight.remove(message[1])
                    self.finish(message[1], message[2])
                    if worker.inflight:
                        worker.deadline = time.monotonic() + self.items[worker.inflight[0]]["deadline_s"]

    def enforce_deadlines(self) -> None:
        """Kill a worker whose current item is late (its item: `timeout`; the rest: re-queued)."""
        now = time.monotonic()
        for position, worker in enumerate(self.workers):
            if worker.ready and worker.inflight and now > worker.deadline:
                index = worker.inflight.popleft()
                limit = self.items[index]["deadline_s"]
                self.finish(index, {"status": "timeout", "detail": f"no verdict within {limit:g} s: checker killed"})
                self.pending.extendleft(reversed(worker.inflight))
                worker.inflight.clear()
                self.replace(position)
            elif not worker.ready and now > worker.started + START_TIMEOUT_S:
                self.start_failures += 1
                self.replace(position)

    def finish(self, index: int, result: dict) -> None:
        self.results[index] = result
        if self.progress is not None:
            self.progress(1)

    def replace(self, position: int) -> None:
        self.workers[position].kill()
        self.workers[position] = _Worker(self.memory_mb, self.first_paths)

    def final_results(self) -> list[dict]:
        unstarted = {"status": "error", "detail": "checker workers could not start (run `python -m rewards.worker` "
                     "to see why)"}
        return [result if result is not None else dict(unstarted) for result in self.results]
