"""bench/sweep_breakdown.py (also `bench/sweep.py --breakdown`): each part's time leaves out the parts it
calls, so the parts and 'other' add up to the wall time."""

from __future__ import annotations

import time
from pathlib import Path

from load_file import load_file

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    return load_file(REPO / "bench" / "sweep_breakdown.py", "bench_sweep_breakdown")


def test_part_clock_times_each_part_without_the_parts_it_calls(monkeypatch):
    bench = load_bench()
    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(time, "process_time", lambda: now[0] / 2)

    def work(seconds: float):
        now[0] += seconds

    clock = bench.PartClock()
    write = clock.wrap("store writes", lambda: work(0.5))
    generate = clock.wrap("engine generate", lambda: work(10.0))

    def one_chunk():
        work(0.25)
        generate()
        write()
        write()

    clock.wrap("backend requests/results", one_chunk)()
    assert clock.wall["engine generate"] == 10.0 and clock.wall["store writes"] == 1.0
    assert clock.wall["backend requests/results"] == 0.25 and clock.cpu["backend requests/results"] == 0.125
    assert clock.calls["store writes"] == 2 and clock.calls["backend requests/results"] == 1
    assert sum(clock.wall.values()) == now[0]  # nothing counted twice, nothing lost
    assert set(clock.wall) == set(bench.PARTS) and set(bench.ENGINE_PARTS) <= set(bench.PARTS)


def test_sweep_bench_breakdown_flag_runs_the_breakdown_bench():
    """`bench/sweep.py --breakdown` (the name the committed results were recorded under) is the breakdown bench."""
    import subprocess
    import sys

    alias = subprocess.run([sys.executable, str(REPO / "bench" / "sweep.py"), "--breakdown", "--help"],
                           capture_output=True, text=True, timeout=120)
    assert alias.returncode == 0, alias.stderr
    assert "--sweep-dir" in alias.stdout and "--d512-layers" not in alias.stdout
    plain = subprocess.run([sys.executable, str(REPO / "bench" / "sweep.py"), "--help"],
                           capture_output=True, text=True, timeout=120)
    assert "--d512-layers" in plain.stdout and "--sweep-dir" not in plain.stdout
