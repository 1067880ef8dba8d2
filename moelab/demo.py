"""`moelab demo`: the lab's main job. Does GRPO, or more samples, rescue the sparse models?

    moelab demo configs/demo/toy.yaml            # the toy family on a laptop CPU (timing: README.md)
    moelab demo configs/demo/toy.yaml --quick    # the same pipeline on less work
    moelab demo configs/demo/paper.yaml          # the released checkpoints, on a GPU node

Four stages, each reading only what the previous one wrote to disk, each skipped on a rerun when
its output is complete (sweeps resume sample by sample; a GRPO run is done when its `summary.json`
records the same base weights and recipe, else it is moved aside to `<dir>.stale-N` and rerun):

  1. sweep every member (N samples per problem + greedy) -> <run>/before/
  2. GRPO every member with the same budget            -> <run>/grpo/<member>/
     and the SFT-on-gold control beside it (`rl.sft_control`) -> <run>/sft/<member>/
  3. sweep every GRPO'd member the same way            -> <run>/after/
  4. the deficit analysis of both sweeps (`moelab deficit`: paired before/after CIs, gap tests,
     figures; with `deficit_recipe`, its eval and taskloss sub-jobs run on the members) -> <run>/deficit/
  5. plots and report.md                               -> <run>/plots/, <run>/report.md

and `<run>/timing.json`: each stage's start and the whole run's seconds, with the command and commit.

The report quotes numbers straight from the metrics CSVs (a test re-derives them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from core.config import load_config, save_resolved_config
from core.errors import UserError
from moelab.demo_schema import DemoConfig
from moelab.members import member_grpo_recipe, member_slug, train_or_reuse
from moelab.recipes import placed_in
from moelab.recipes import run_dir as recipe_run_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", default="configs/demo/toy.yaml", help="demo recipe (default: toy)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the demo recipe")
    parser.add_argument("--quick", action="store_true", help="apply the recipe's `quick` overrides (<= 5 min)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.recipe, args.overrides, schema=DemoConfig)
    report = run_demo(cfg, quick=args.quick)
    print(f"report: {report}")
    return 0


class StageClock:
    """Prints each stage's start and keeps it, so the demo writes its own `timing.json` (the README's
    timing figures come from that file, with its command, commit and date, not from a terminal copy)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.stages: list[dict[str, Any]] = []

    def __call__(self, title: str) -> None:
        elapsed = round(time.monotonic() - self.started)
        self.stages.append({"stage": title, "elapsed_s": elapsed})
        print(f"\n=== {title}  (elapsed {elapsed} s)", flush=True)

    def write(self, path: Path, **extra: Any) -> Path:
        from core.provenance import provenance

        seconds = round(time.monotonic() - self.started)
        path.write_text(json.dumps({"provenance": provenance(), **extra, "seconds": seconds, "stages": self.stages},
                                   indent=1) + "\n")
        return path


def run_deficit_stage(cfg: Any, run_dir: Path, models: list[str], trained: dict[str, str], before_dir: Path,
                      after_dir: Path, quick: bool) -> Path:
    """`moelab deficit` on the demo's own sweeps (never sweeping or training again), in <run>/deficit; returns its
    run directory."""
    from moelab.deficit import run_deficit
    from moelab.deficit_schema import DeficitConfig

    overrides = [*cfg.deficit_overrides, *(cfg.quick.deficit_overrides if quick else [])]
    values = {"models": models, **placed_in("deficit", run_dir / "deficit"),
              "sweep": {"output": str(before_dir), "recipe": None},
              "grpo": {"after_sweep": str(after_dir), "recipe": None, "trained": trained}}
    deficit_cfg = load_config(cfg.deficit_recipe, overrides, schema=DeficitConfig, values=values)
    run_deficit(deficit_cfg)
    return recipe_run_dir(deficit_cfg)


def run_demo(cfg: Any, quick: bool = False) -> Path:
    """Run (or resume) the whole demo; returns the path of report.md."""
    from inference.sweep.run import run_sweep
    from inference.sweep.schema import SweepConfig

    stage = StageClock()
    run_dir = DemoConfig.run_dir(cfg, quick=quick)
    save_resolved_config(cfg, run_dir)
    models = list(cfg.quick.models) if quick and cfg.quick.models else list(cfg.models)
    sweep_overrides = [*cfg.sweep_overrides, *(cfg.quick.sweep_overrides if quick else [])]
    grpo_overrides = [*cfg.grpo_overrides, *(cfg.quick.grpo_overrides if quick else [])]

    def sweep(name: str, members: list[str]) -> Path:
        """The sweep recipe on `members` in <run>/<name>; returns its metrics.csv."""
        values = {**placed_in("sweep", run_dir / name), "models": members}
        sweep_cfg = load_config(cfg.sweep_recipe, sweep_overrides, schema=SweepConfig, values=values)
        return Path(run_sweep(sweep_cfg)["metrics"])

    # Validate the GRPO recipe for every member before the first (long) sweep starts.
    unknown = sorted(set(cfg.grpo_recipes) - set(models))
    if unknown:
        raise UserError(f"grpo_recipes names {unknown}, which are not members (models: {', '.join(models)})")
    grpo_cfgs = {m: member_grpo_recipe(cfg.grpo_recipes.get(m, cfg.grpo_recipe), grpo_overrides, m, run_dir)
                 for m in models}

    stage(f"1/5 sweep before GRPO: {len(models)} members")
    before = sweep("before", models)

    trained: dict[str, str] = {}
    sft_dirs: dict[str, Path] = {}
    for i, member in enumerate(models, 1):
        stage(f"2/5 GRPO {i}/{len(models)}: {member}")
        trained[member] = train_or_reuse(grpo_cfgs[member])
        if cfg.sft_control.enabled:
            from rl.sft_control import run_sft_control

            stage(f"2/5 SFT-on-gold control {i}/{len(models)}: {member}")
            sft_dirs[member] = run_dir / "sft" / member_slug(member)
            s = cfg.sft_control
            run_sft_control(grpo_cfgs[member], sft_dirs[member], steps=s.steps, learning_rate=s.learning_rate,
                            batch_size=s.batch_size, seed=s.seed,
                            before_eval_from=recipe_run_dir(grpo_cfgs[member]))

    stage("3/5 sweep after GRPO")
    after = sweep("after", [trained[m] for m in models])

    stage("4/5 deficit analysis")
    deficit_dir = run_deficit_stage(cfg, run_dir, models, trained, before.parent, after.parent, quick)

    stage("5/5 plots and report")
    from moelab.demo_report import write_report

    report = write_report(run_dir, models, trained, before, after, cfg,
                          grpo_dirs={m: recipe_run_dir(c) for m, c in grpo_cfgs.items()}, deficit_dir=deficit_dir,
                          sft_dirs=sft_dirs)
    timing = stage.write(run_dir / "timing.json", quick=quick)
    print(f"demo finished in {json.loads(timing.read_text())['seconds']} s (stage times: {timing})", flush=True)
    return report

