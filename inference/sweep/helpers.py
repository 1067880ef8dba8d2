"""Helper processes for a sweep's last stages, started while the engine works.

Why: after the last model generates, the sweep aggregates (the voting estimators are most of it) and
draws its plots, in one process on one core, and importing matplotlib alone takes ~0.5 s. On the toy
sweep those two stages were ~2.2 s of ~60 s, the largest part of its time outside the engine
(`bench/sweep_breakdown.py`). So a sweep that will aggregate or plot starts a small process pool
when it starts, and the pool imports the estimators and matplotlib while the engine starts and
generates, on a core the engine leaves mostly idle. At the end the voting strategies run in the pool
while the sweep's own process computes the closed forms (the results are the same for any number of
processes: `inference.ttc.aggregate`), and the figures are drawn in the pool.

Spawned, not forked: the sweep's process holds vLLM's and torch's threads (and a CUDA context on a
GPU machine), which a forked child must not inherit. If the pool cannot start, or breaks, the work runs
in the sweep's process as before, after a one-line warning: the outputs are the same either way.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import types
import warnings
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawned processes first import the parent's `__main__` script, as `__mp_main__`: a script that calls the
    sweep without an `if __name__ == "__main__":` guard would run again, whole, in every helper. The helpers
    need nothing from it, so while they start, `__main__` is an empty module (multiprocessing then imports
    nothing for it); the real one is back as soon as the processes exist."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


MAX_HELPERS = 8  # enough for the study's grid (its vote chunks); a few idle processes cost ~60 MB each


def _exit_without_teardown() -> None:
    """Each helper's initializer: the sweep waits for its helpers to exit, and a helper holding matplotlib,
    pyarrow and the estimators takes ~0.1 s to free its heap object by object; frozen, it does not
    (`core.platform.skip_heap_teardown_at_exit`, as every moelab command does)."""
    from core.platform import skip_heap_teardown_at_exit

    skip_heap_teardown_at_exit()


def warm_up() -> int:
    """What the helpers will need, imported now (while the engine works), not when the sweep waits."""
    import inference.sweep.figures  # noqa: F401 - the plot stage
    import inference.ttc.aggregate  # noqa: F401 - the estimators
    from inference.ttc.plots import pyplot

    pyplot()
    return os.getpid()


class SweepHelpers:
    """The pool (or None where it could not start): `executor` for the votes, `map` for other tasks."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or min(MAX_HELPERS, os.cpu_count() or 1)
        self.executor: Executor | None = None
        self.warm_ups: list[Future] = []
        self._started = False

    def start(self) -> None:
        """Spawn and warm the helpers (once; nothing with fewer than two cores, where they would only take
        turns with the sweep's own process). The sweep calls this once it has planned, before its first
        engine starts: the spawning then competes with the engine's start-up, not with the planning."""
        if self._started:
            return
        self._started = True
        if self.workers < 2:
            return
        try:
            self.executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_exit_without_teardown)
            with _main_module_hidden():  # every helper process starts inside this call (spawned on submit)
                self.warm_ups = [self.executor.submit(warm_up) for _ in range(self.workers)]
        except (OSError, RuntimeError, ValueError) as err:
            self._give_up(f"could not start ({err})")

    def map(self, function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """`[function(item) for item in items]`, side by side in the helpers; here when there are none or the
        pool broke (warned once)."""
        items = list(items)
        self.start()
        if self.executor is not None:
            try:
                return list(self.executor.map(function, items))
            except BrokenProcessPool as err:
                self._give_up(f"broke ({err})")
        return [function(item) for item in items]

    def votes(self, aggregate: Callable[[int | Executor], Any]) -> Any:
        """`aggregate(workers)` with the pool as its workers; again with 1 (this process) if the pool broke."""
        self.start()
        if self.executor is not None:
            try:
                return aggregate(self.executor)
            except BrokenProcessPool as err:
                self._give_up(f"broke ({err})")
        return aggregate(1)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None

    def __enter__(self) -> "SweepHelpers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _give_up(self, why: str) -> None:
        warnings.warn(f"sweep helper processes {why}: aggregating and plotting in this process instead")
        executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
