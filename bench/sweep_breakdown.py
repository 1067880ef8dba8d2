"""Where a whole `moelab sweep` spends its wall time, part by part (issue 28). A toy sweep
(`configs/sweep/toy.yaml` cut by `BREAKDOWN_OVERRIDES`, then `--set KEY=VALUE`s) runs in a child
process exactly as `moelab sweep RECIPE OVERRIDES` does, with the sweep's stages timed from outside
(their functions wrapped; each part's time excludes the parts it calls): process start-up, config,
planning, store scans, engine start, engine generate (inside vLLM's `LLM.generate`), the backend's
requests and results, store rows and writes, engine shutdown, store reads, scoring, the scored
table, aggregation, plots and process exit. 'other' is the wall time (spawn to exit, measured by the
parent) minus all of those. The time outside the engine is everything but the engine's start, generate
and shutdown. The shutdown is vLLM's own code (`EngineCore.shutdown`: it unfreezes the heap it froze at
start-up, collects it twice and tears down its distributed state; the lab's `close` only drops its reference),
engine time as its start-up is; the report also gives the share with the shutdown counted outside.
`--profile FILE` also writes a cProfile of the outside-engine part (off while vLLM runs).

    .venv/bin/python bench/sweep_breakdown.py                            # 2 toy models x 100 problems x 32 + greedy
    .venv/bin/python bench/sweep_breakdown.py --series idle --out docs/results/bench-sweep-overhead.json
    .venv/bin/python bench/sweep_breakdown.py --set data.limit=20 --profile /tmp/sweep.prof

Its last line: `ratio: <wall / engine time>` (1.00 = no time outside the engine; <= 1.053 is <= 5%).

`bench/sweep.py --breakdown ...` runs this bench too (the name its committed results were recorded under).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

SWEEP_ENV = dict(os.environ)  # the sweeps run in the environment `moelab sweep` would get
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
LINES: list[str] = []


def report(line: str) -> None:
    """Print a result line and keep it for --out."""
    print(line, flush=True)
    LINES.append(line)


# A toy sweep of 1-3 minutes on 2 cores: 2 members x 100 problems x (32 samples + greedy) = 6,600 samples
BREAKDOWN_RECIPE = "configs/sweep/toy.yaml"
BREAKDOWN_OVERRIDES = ["models=[toy-d64-E4-k2,toy-d64-E8-k2]", "data.limit=100"]
ENGINE_PARTS = ("engine start", "engine generate", "engine shutdown")
PARTS = {  # every itemized part of a sweep's wall time, in the order a sweep reaches them
    "start-up": "process start to the sweep's CLI: interpreter, imports",
    "config": "recipe loading and validation (core.config.load_config)",
    "planning": "model lookup, weights fingerprints, datasets and prompts, sample plans, the resolved config",
    "store scans": "the store's key set (SampleStore.keys), leftover temporaries",
    "engine start": "vLLM import and engine build (make_backend)",
    "engine generate": "inside vLLM's LLM.generate",
    "backend requests/results": "VLLMBackend.generate around LLM.generate: SamplingParams in, results out",
    "store rows": "a dict per sample for the store (run.store_rows)",
    "store writes": "parquet shards, atomically (SampleStore.write)",
    "engine shutdown": "the backend's close: vLLM's own shutdown (unfreezes the heap it froze at start-up, two full "
                       "garbage collections, distributed teardown), anything more",
    "store reads": "completions back from the store (SampleStore.read)",
    "scoring": "answer checking (run.score_completions -> rewards.score_samples)",
    "scored table": "scored.parquet built and written (run.scored_table, write_parquet_atomic)",
    "aggregation": "metrics.csv (run._aggregate -> inference.ttc.aggregate; votes in the helper processes)",
    "plots": "plots/*.png (figures.draw_plots; the figures drawn side by side in the helper processes)",
    "exit": "after the CLI returns: atexit handlers, interpreter teardown",
}


class PartClock:
    """Wall and CPU seconds per part, exclusive: a part's time leaves out the parts it calls.

    With a profiler, profiling is off inside the engine's parts, so it shows only the time outside the engine.
    """

    def __init__(self, profiler: Any = None) -> None:
        self.wall: dict[str, float] = dict.fromkeys(PARTS, 0.0)
        self.cpu: dict[str, float] = dict.fromkeys(PARTS, 0.0)
        self.calls: dict[str, int] = dict.fromkeys(PARTS, 0)
        self.stack: list[list[float]] = []  # per open part: wall and CPU of the parts it called
        self.profiler = profiler

    def wrap(self, part: str, fn: Callable) -> Callable:
        quiet = self.profiler is not None and part in ENGINE_PARTS

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if quiet:
                self.profiler.disable()
            self.stack.append([0.0, 0.0])
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                inner = self.stack.pop()
                self.wall[part] += wall - inner[0]
                self.cpu[part] += cpu - inner[1]
                self.calls[part] += 1
                if self.stack:
                    self.stack[-1][0] += wall
                    self.stack[-1][1] += cpu
                if quiet:
                    self.profiler.enable()

        return timed

    def patch(self, owner: Any, name: str, part: str) -> None:
        setattr(owner, name, self.wrap(part, getattr(owner, name)))


def instrument(clock: PartClock, counts: dict[str, int]) -> None:
    """Wrap the functions `moelab sweep` calls (looked up at call time, so wrapping the module attribute is enough)."""
    import checkpoints_index.loading as loading
    import core.config as config
    from inference.generation.store import SampleStore
    from inference.sweep import run

    clock.patch(config, "load_config", "config")
    for owner, name in [(loading, "model_source"), (loading, "weights_version"), (config, "save_resolved_config"),
                        (run, "load_dataset_prompts"), (run, "settings_from_config"), (run, "plan_samples")]:
        clock.patch(owner, name, "planning")
    clock.patch(SampleStore, "keys", "store scans")
    clock.patch(SampleStore, "remove_temporaries", "store scans")
    clock.patch(SampleStore, "write", "store writes")
    clock.patch(SampleStore, "read", "store reads")
    clock.patch(run, "store_rows", "store rows")
    clock.patch(run, "score_completions", "scoring")
    clock.patch(run, "scored_table", "scored table")
    clock.patch(run, "write_parquet_atomic", "scored table")
    clock.patch(run, "_aggregate", "aggregation")
    clock.patch(run, "draw_plots", "plots")  # the figures are drawn in helper processes: this is the wait
    build = clock.wrap("engine start", run.make_backend)
    wrapped: set[tuple[type, str]] = set()

    def make_backend(kind: str, model: str, **options: Any) -> Any:
        backend = build(kind, model, **options)
        # on the classes, not the instances: a wrapper held by the engine would keep it alive after close()
        for owner, name, part in [(type(getattr(backend, "llm", None)), "generate", "engine generate"),
                                  (type(backend), "generate", "backend requests/results"),
                                  (type(backend), "close", "engine shutdown")]:
            if owner is not type(None) and (owner, name) not in wrapped:
                clock.patch(owner, name, part)
                wrapped.add((owner, name))
        if (type(backend), "count") not in wrapped:
            generate = type(backend).generate

            def counted(self: Any, requests: Any) -> Any:
                counts["samples"] += len(requests)
                counts["generate_calls"] += 1
                return generate(self, requests)

            type(backend).generate = counted
            wrapped.add((type(backend), "count"))
        return backend

    run.make_backend = make_backend


def breakdown_child(result_path: str, profile_path: str, sweep_argv: list[str], spawned: float) -> None:
    """One instrumented `moelab sweep` in this process; its parts go to `result_path` as JSON."""
    started = time.monotonic()
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
    clock = PartClock(profiler)
    counts = {"samples": 0, "generate_calls": 0}
    instrument(clock, counts)
    from moelab.cli import main as moelab_main

    if profiler is not None:
        profiler.enable()
    code = moelab_main(["sweep", *sweep_argv])
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_path)
    finished = time.monotonic()
    if code:
        raise SystemExit(code)
    clock.wall["start-up"] = started - spawned
    Path(result_path).write_text(json.dumps({"wall": clock.wall, "cpu": clock.cpu, "calls": clock.calls,
                                             "finished": finished, **counts}))


def breakdown_run(args: argparse.Namespace, out_dir: Path, index: int) -> dict:
    """A fresh sweep (empty store) in a child process; its parts, 'other' and the whole wall time."""
    import resource

    result = out_dir / f"parts-{index}.json"
    log = out_dir / f"sweep-{index}.log"
    sweep_argv = [args.recipe, *BREAKDOWN_OVERRIDES, *args.set, f"output_dir={out_dir}", f"run_name=run-{index}"]
    profile = "" if args.profile is None or index else str(args.profile)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawned = time.monotonic()
    with log.open("w") as sink:
        code = subprocess.run([sys.executable, __file__, "--child", str(result), profile, str(spawned),
                               *sweep_argv], stdout=sink, stderr=subprocess.STDOUT, env=SWEEP_ENV).returncode
    ended = time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code:
        raise SystemExit(f"the sweep failed (exit {code}); its log: {log}\n" + "".join(log.open().readlines()[-20:]))
    parts = json.loads(result.read_text())
    wall, cpu = parts["wall"], parts["cpu"]
    wall["exit"] = ended - parts["finished"]
    total = ended - spawned
    cpu_total = sum(getattr(after, f) - getattr(before, f) for f in ("ru_utime", "ru_stime"))
    wall["other"] = total - sum(wall.values())
    cpu["other"] = cpu_total - sum(cpu.values())  # start-up and exit CPU included
    return {"wall_s": total, "cpu_s": cpu_total, "parts_wall_s": wall, "parts_cpu_s": cpu,
            "calls": parts["calls"], "samples": parts["samples"], "generate_calls": parts["generate_calls"],
            "log": str(log)}


def breakdown(args: argparse.Namespace) -> float:
    """Run `--repeats` fresh toy sweeps, print each part's share of the wall time (medians), write `--out`."""
    settings = {"recipe": args.recipe, "overrides": [*BREAKDOWN_OVERRIDES, *args.set]}
    if args.out:
        from core.provenance import refuse_other_experiment

        refuse_other_experiment(args.out, settings)
    load_at_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as tmp:
        out_dir = Path(args.sweep_dir or tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs = []
        for i in range(args.repeats):
            runs.append(breakdown_run(args, out_dir, i))
            print(f"run {i + 1}/{args.repeats}: {runs[-1]['wall_s']:.1f} s wall, {runs[-1]['samples']} samples "
                  f"generated (log {runs[-1]['log']})", flush=True)
    load_at_end = round(os.getloadavg()[0], 2)
    names = [*PARTS, "other"]
    wall = {n: statistics.median(r["parts_wall_s"][n] for r in runs) for n in names}
    cpu = {n: statistics.median(r["parts_cpu_s"][n] for r in runs) for n in names}
    total = statistics.median(r["wall_s"] for r in runs)
    engine = statistics.median(sum(r["parts_wall_s"][n] for n in ENGINE_PARTS) for r in runs)
    outside = statistics.median(r["wall_s"] - sum(r["parts_wall_s"][n] for n in ENGINE_PARTS) for r in runs)
    share = outside / total
    ratio = total / engine
    report(f"sweep overhead: {args.recipe} {' '.join(settings['overrides'])}: {runs[0]['samples']} samples generated "
           f"in {runs[0]['generate_calls']} generate calls; medians of {len(runs)} fresh run(s); load "
           f"{load_at_start} at start, {load_at_end} at end ({os.cpu_count()} cores)")
    report(f"  {'part':<26} {'wall s':>8} {'share':>7} {'CPU s':>8}")
    for name in names:
        label = "other (un-itemized)" if name == "other" else name
        report(f"  {label:<26} {wall[name]:8.2f} {wall[name] / total:7.1%} {cpu[name]:8.2f}")
    report(f"  {'wall (spawn to exit)':<26} {total:8.2f} {1:7.1%} "
           f"{statistics.median(r['cpu_s'] for r in runs):8.2f}")
    report(f"  engine (start + generate + shutdown): {engine:.2f} s = {engine / total:.1%} of wall")
    report(f"  outside the engine: {outside:.2f} s = {share:.1%} of wall; target <= 5%: "
           f"{'met' if share <= 0.05 else 'NOT met'}")
    teardown = wall["engine shutdown"]  # vLLM's own shutdown (two full garbage collections per engine)
    report(f"  outside the engine, vLLM's shutdown counted outside too: {outside + teardown:.2f} s = "
           f"{(outside + teardown) / total:.1%} of wall")
    if args.out:
        from core.files import atomic_write
        from core.provenance import provenance

        record = {"provenance": provenance(), "series": args.series, "date": time.strftime("%Y-%m-%d"),
                  "settings": settings, "load_1m_at_start": load_at_start, "load_1m_at_end": load_at_end,
                  "repeats": len(runs), "wall_s": round(total, 2), "engine_s": round(engine, 2),
                  "outside_engine_s": round(outside, 2), "outside_engine_share": round(share, 4),
                  "outside_engine_with_shutdown_share": round((outside + teardown) / total, 4),
                  "parts_wall_s": {n: round(v, 3) for n, v in wall.items()},
                  "parts_cpu_s": {n: round(v, 3) for n, v in cpu.items()},
                  "parts": {**PARTS, "other": "wall minus every part above"},
                  "runs": [{k: v for k, v in r.items() if k != "log"} for r in runs],
                  "ratio": round(ratio, 3), "ratio_is": "wall / engine (start + generate + shutdown), same run",
                  "lines": LINES}
        atomic_write(args.out, lambda temp: temp.write_text(json.dumps(record, indent=1) + "\n"))
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="fresh sweeps (medians reported)")
    parser.add_argument("--recipe", default=BREAKDOWN_RECIPE, help="the sweep recipe")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"a recipe override after {' '.join(BREAKDOWN_OVERRIDES)} (repeatable)")
    parser.add_argument("--sweep-dir", default=None, help="keep the sweeps' outputs here (default: temp)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write a cProfile of the first run's time outside the engine here")
    parser.add_argument("--out", default=None, help="also write the figures and provenance as JSON, e.g. "
                                                    "docs/results/bench-sweep-overhead.json")
    parser.add_argument("--series", default="issue-28", help="label of the runs this one belongs to "
                        "(READMEs select runs by it, e.g. the idle-core runs of one change)")
    if sys.argv[1:2] == ["--child"]:  # internal: one instrumented sweep (see breakdown_run)
        result, profile, spawned, *sweep_argv = sys.argv[2:]
        breakdown_child(result, profile, sweep_argv, float(spawned))
        return
    report(f"ratio: {breakdown(parser.parse_args()):.3f}")


if __name__ == "__main__":
    main()
