"""The sweep's helper processes (`inference.sweep.helpers`): the same metrics and figures as the sweep's own
process draws, work really done elsewhere, and a broken pool falls back with a warning instead of failing."""

import os
import signal
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inference.sweep.helpers import SweepHelpers
from inference.sweep.run import aggregate_and_plot


def scored(tmp_path, problems: int = 70, samples: int = 16):
    """A scored table with two models and enough problems for several vote chunks (VOTE_CHUNK = 32)."""
    rows = [{"model": model, "dataset": "toy", "setting": "T0.8", "problem_id": f"q{p}", "sample_idx": i,
             "answer": str((i * (p + 1) + m) % 4), "correct": (i * (p + 1) + m) % 4 == 0,
             "score": -0.1 * ((i + p) % 7), "num_tokens": 10 + i % 5}
            for m, model in enumerate(["toy-d64-E4-k2", "toy-d64-E8-k2"]) for p in range(problems)
            for i in range(samples)]
    path = tmp_path / "scored.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    recipe = SimpleNamespace(k=None, strategies=["pass", "majority", "weighted_majority", "best_of_n"],
                             estimator="exact", bootstrap=50, seed=0, vote_weight="auto")
    cfg = SimpleNamespace(sampling=SimpleNamespace(num_samples=samples), aggregate=recipe, run_name="r",
                          scoring=SimpleNamespace(rule="lab", best_of_n_score="mean_logprob"), report_to=None)
    return path, cfg


def pid_of_this_process(_: object = None) -> int:
    return os.getpid()


@pytest.mark.slow  # spawns processes
def test_helpers_give_the_same_metrics_and_figures_and_really_work_elsewhere(tmp_path):
    path, cfg = scored(tmp_path)
    here = aggregate_and_plot(path, tmp_path / "here", cfg, ["aggregate", "plot"])
    with SweepHelpers(workers=2) as helpers:
        assert helpers.executor is None and not helpers.warm_ups  # nothing spawned before start()
        helpers.start()
        assert helpers.executor is not None
        assert all(f.result(timeout=120) != os.getpid() for f in helpers.warm_ups)  # imported in the helpers
        assert os.getpid() not in helpers.map(pid_of_this_process, range(4))
        there = aggregate_and_plot(path, tmp_path / "there", cfg, ["aggregate", "plot"], helpers)
    assert there["metrics"].read_bytes() == here["metrics"].read_bytes()
    assert "weighted_majority" in here["metrics"].read_text()
    figures = sorted(p.name for p in here["plots"].glob("*.png"))
    assert figures and figures == sorted(p.name for p in there["plots"].glob("*.png"))
    for name in figures:
        assert (here["plots"] / name).read_bytes() == (there["plots"] / name).read_bytes(), name


@pytest.mark.slow  # spawns processes
def test_a_broken_pool_falls_back_to_this_process_with_a_warning(tmp_path):
    path, cfg = scored(tmp_path, problems=40)
    here = aggregate_and_plot(path, tmp_path / "here", cfg, ["aggregate"])["metrics"]
    with SweepHelpers(workers=2) as helpers:
        helpers.start()
        pids = {f.result(timeout=120) for f in helpers.warm_ups}
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        with pytest.warns(UserWarning, match="sweep helper processes broke"):
            there = aggregate_and_plot(path, tmp_path / "there", cfg, ["aggregate"], helpers)["metrics"]
        assert helpers.executor is None
        assert helpers.map(pid_of_this_process, range(2)) == [os.getpid()] * 2  # the next tasks run here too
    assert there.read_bytes() == here.read_bytes()


def test_one_core_starts_no_helpers():
    with SweepHelpers(workers=1) as helpers:
        helpers.start()
        assert helpers.executor is None
        assert helpers.map(pid_of_this_process, [1]) == [os.getpid()]
        assert helpers.votes(lambda workers: workers) == 1


UNGUARDED_SCRIPT = """
import os, sys
sys.path.insert(0, {repo!r})
with open({log!r}, "a") as log:
    log.write(f"ran in {{os.getpid()}}\\n")
from inference.sweep.helpers import SweepHelpers
with SweepHelpers(workers=2) as helpers:
    helpers.start()
    pids = helpers.map(abs, [-1, -2])
    warmed = [f.result(timeout=120) for f in helpers.warm_ups]
print("helpers", sorted(set(warmed)), "script", os.getpid(), "results", pids)
"""


@pytest.mark.slow  # spawns processes
def test_a_script_without_a_main_guard_is_not_run_again_in_the_helpers(tmp_path):
    """Spawned processes import the parent's main script unless told otherwise: without a guard, the whole
    script (here: one line to a log; in life: a sweep) would run again in every helper."""
    import subprocess
    import sys
    from pathlib import Path

    log = tmp_path / "log.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT.format(repo=str(Path(__file__).resolve().parents[1]), log=str(log)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "results [1, 2]" in done.stdout and "could not start" not in done.stderr
    assert log.read_text().splitlines() == [f"ran in {done.stdout.split('script ')[1].split()[0]}"]
