"""`moelab posttrain`: GRPO beside its SFT-on-gold control, per member, over seeds, with paired CIs.

    moelab posttrain configs/posttrain/toy.yaml [key=value ...]

Why a job of its own: one GRPO run on one seed says little (two seeds of the same toy recipe have
differed by 2x), and a GRPO gain on a checkpoint that stopped at a non-zero LR has to be read against
what plain SFT on gold solutions does with the same problems (`rl.sft_control`). Per member and
seed this runs both (GRPO with `grpo.seed = s`, the control with data seed s), each evaluated
greedily before and after on the GRPO recipe's eval set, problem by problem. The table
(`results`) has one row per (member, method, seed): accuracy before and after and the paired
bootstrap CI of the change (`rl.report.paired_change`); and one `pooled` row per (member, method):
the mean change over seeds, the paired bootstrap CI over problems of each problem's seed-averaged
change, and a 95% Student-t interval over the seeds' changes (the training-seed spread, which the
problem bootstrap does not see). Runs already finished (their `summary.json`) are reused.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from core.config import load_config, save_resolved_config
from core.errors import UserError
from core.files import atomic_write_csv
from core.provenance import write_sidecar
from moelab.posttrain_schema import PosttrainConfig

COLUMNS = ["member", "method", "seed", "dataset", "num_problems", "before", "after", "change", "ci_low", "ci_high",
           "fixed", "broken", "seed_t_low", "seed_t_high", "run_dir"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", default="configs/posttrain/toy.yaml", help="posttrain recipe")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")


def run(args: argparse.Namespace) -> int:
    run_posttrain(load_config(args.recipe, args.overrides, schema=PosttrainConfig))
    return 0


def _run_one(cfg_yaml: str, member: str, method: str, seed: int) -> tuple[str, str, int, str]:
    """One GRPO run or SFT control, in a worker process; returns where it wrote its summary."""
    from omegaconf import OmegaConf

    from moelab.members import member_grpo_recipe, train_or_reuse
    from moelab.recipes import run_dir as run_dir_of

    cfg = OmegaConf.create(cfg_yaml)
    _own_rendezvous_port()
    seed_dir = run_dir_of(cfg) / f"seed{seed}"
    grpo_cfg = member_grpo_recipe(cfg.grpo_recipe, list(cfg.grpo_overrides), member, seed_dir,
                                  values={"grpo": {"seed": seed}})
    if method == "grpo":
        train_or_reuse(grpo_cfg)
        return member, method, seed, str(run_dir_of(grpo_cfg))
    from rl.sft_control import run_sft_control

    out = seed_dir / "sft" / run_dir_of(grpo_cfg).name
    s = cfg.sft_control
    run_sft_control(grpo_cfg, out, steps=s.steps, learning_rate=s.learning_rate, batch_size=s.batch_size, seed=seed)
    return member, method, seed, str(out)


def _own_rendezvous_port() -> None:
    """Each worker's single-process torch.distributed group gets a free port of its own: two runs at
    once would otherwise both bind the default 29500 (EADDRINUSE)."""
    import os
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        os.environ["MASTER_PORT"] = str(probe.getsockname()[1])


def per_problem_changes(run_dir: Path) -> dict[str, dict[str, float]]:
    """dataset -> problem id -> after - before (first vs last eval step) of one run."""
    from rl.report import SAMPLES_FILE, read_verdicts

    changes = {}
    for dataset, steps in read_verdicts(run_dir / SAMPLES_FILE).items():
        first, last = steps[min(steps)], steps[max(steps)]
        changes[dataset] = {p: float(last[p]) - float(first[p]) for p in set(first) & set(last)}
    return changes


def pooled_row(member: str, method: str, dataset: str, runs: list[dict], run_dirs: list[Path]) -> dict:
    """Mean change over seeds; paired bootstrap CI over problems of the seed-averaged change; t over seeds."""
    import numpy as np

    from core.stats import bootstrap_ci, t_interval

    per_seed = [per_problem_changes(d)[dataset] for d in run_dirs]
    shared = sorted(set.intersection(*(set(c) for c in per_seed)))
    averaged = np.array([[sum(c[p] for c in per_seed) / len(per_seed)] for p in shared])
    mean, low, high = bootstrap_ci(averaged, 10000, 0)
    _, seed_low, seed_high = t_interval([r["change"] for r in runs])
    n = len(runs)
    return {"member": member, "method": method, "seed": "pooled", "dataset": dataset, "num_problems": len(shared),
            "before": sum(float(r["before"]) for r in runs) / n, "after": sum(float(r["after"]) for r in runs) / n,
            "change": float(mean[0]), "ci_low": float(low[0]), "ci_high": float(high[0]),
            "fixed": sum(int(r["fixed"]) for r in runs), "broken": sum(int(r["broken"]) for r in runs),
            "seed_t_low": seed_low, "seed_t_high": seed_high, "run_dir": ""}


def run_posttrain(cfg: Any) -> Path:
    """Every (member, method, seed) run, then the table of per-seed and pooled changes."""
    from omegaconf import OmegaConf

    from moelab.recipes import run_dir as run_dir_of

    if not cfg.models or not cfg.seeds:
        raise UserError("posttrain: models and seeds must each list at least one value")
    methods = ["grpo", "sft"] if cfg.sft_control.enabled else ["grpo"]
    save_resolved_config(cfg, run_dir_of(cfg))
    jobs = [(m, method, s) for m in cfg.models for s in cfg.seeds for method in methods]
    cfg_yaml = OmegaConf.to_yaml(cfg)
    start = time.time()
    done: dict[tuple, Path] = {}
    with ProcessPoolExecutor(max_workers=max(1, cfg.workers), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_one, cfg_yaml, *job) for job in jobs]
        for future in as_completed(futures):
            member, method, seed, out = future.result()
            done[(member, method, seed)] = Path(out)
            print(f"[posttrain] {len(done)}/{len(jobs)}: {member} {method} seed {seed} -> {out}", flush=True)
    rows = []
    for member in cfg.models:
        for method in methods:
            dirs = [done[(member, method, s)] for s in cfg.seeds]
            per_seed: dict[str, list[dict]] = {}
            for seed, run_dir in zip(cfg.seeds, dirs):
                summary = json.loads((run_dir / "summary.json").read_text())
                for dataset, change in (summary.get("eval_change") or {}).items():
                    row = {"member": member, "method": method, "seed": seed, "dataset": dataset,
                           **{k: change[k] for k in ("num_problems", "before", "after", "change", "ci_low", "ci_high",
                                                     "fixed", "broken")}, "seed_t_low": "", "seed_t_high": "",
                           "run_dir": str(run_dir)}
                    rows.append(row)
                    per_seed.setdefault(dataset, []).append(row)
            for dataset, runs in per_seed.items():
                rows.append(pooled_row(member, method, dataset, runs, dirs))
    path = atomic_write_csv(cfg.results, rows, COLUMNS)
    # the job's own timing beside its table (command, commit, date, seconds)
    write_sidecar(path, seconds=round(time.time() - start), workers=cfg.workers, runs=len(jobs))
    for row in rows:
        if row["seed"] == "pooled":
            print(f"{row['member']} {row['method']}: {100 * row['before']:.1f} -> {100 * row['after']:.1f}, change "
                  f"{100 * row['change']:+.1f} [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}] over problems, "
                  f"[{100 * row['seed_t_low']:+.1f}, {100 * row['seed_t_high']:+.1f}] over seeds", flush=True)
    print(f"wrote {path}")
    return path
