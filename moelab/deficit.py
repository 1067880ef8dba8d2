"""`moelab deficit`: probe the reasoning deficit itself. Do sparser models reason worse than their loss promises,
and does more test-time compute or GRPO close the gap?

    moelab deficit configs/deficit/toy.yaml          # the toy family here (timing: README.md, "The deficit")
    moelab deficit configs/deficit/paper.yaml        # the released grid that brackets TPP ~ 20, on GPUs

Stages, each reading only what the previous ones wrote, each reusing a finished output:

  1. models      the recipe's names, or every index entry its `select` filters match
  2. eval        few-shot accuracy (`moelab eval` recipe -> results.csv), or a results.csv given
  3. taskloss    task losses (`moelab taskloss` recipe -> taskloss.csv), or a taskloss.csv given
  4. sweep       TTC sweep (`moelab sweep` recipe -> <run>/sweep/before/), or a sweep directory given
                 (stages 2-4 also take the output folder of a run made elsewhere, e.g. by a cluster array
                 and its collect step: scripts/slurm_array.sh)
  5. grpo        optional: GRPO every model, then the same sweep on the GRPO'd models (-> sweep/after/),
                 or the after-GRPO sweep directory of a run already made (a demo's `after/`)
  6. analysis    deficit.csv, the six figures (figures/), report.md (`inference.deficit.analysis*`)

Sub-jobs are loaded through the one recipe table (`moelab.recipes.load_recipe`) and run by their own
job function (`RUNNERS`). What this job sets in them is merged as a mapping: `models`, and the run
directory it gives each (`moelab.recipes.placed_in`: <run>/eval, <run>/taskloss[/<set>],
<run>/sweep/before, <run>/sweep/after, <run>/grpo/<model>), read back by `moelab.recipes.run_dir`,
so any recipe of the right kind works unchanged. What the study did differently and what the lab
reproduces is said by each sub-job's own module; this one only joins their outputs.
"""

from __future__ import annotations

import argparse
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import load_config, save_resolved_config
from core.errors import UserError
from moelab.deficit_schema import DeficitConfig


@dataclass(frozen=True)
class Runner:
    job: str  # "module:function" taking the loaded recipe
    table: str  # the file the job leaves in its run directory (`moelab.recipes.run_dir`)
    whole_run: bool  # the analysis reads the whole run directory (a sweep's scored.parquet too), not just the table


RUNNERS: dict[str, Runner] = {
    "sweep": Runner("inference.sweep.run:run_sweep", "metrics.csv", whole_run=True),
    "eval": Runner("inference.instruments.lm_eval_run:run_eval", "results.csv", whole_run=False),
    "taskloss": Runner("inference.instruments.taskloss:run_taskloss", "taskloss.csv", whole_run=False),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="deficit recipe, e.g. configs/deficit/toy.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the recipe")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.recipe, args.overrides, schema=DeficitConfig)
    report = run_deficit(cfg)
    print(f"report: {report}")
    return 0


def select_models(cfg: Any) -> list[str]:
    """The recipe's `models` (resolved by the index, so typos fail before any work), else the `select` filters."""
    from checkpoints_index.index import all_checkpoints, filter_checkpoints, resolve

    if cfg.models:
        for m in cfg.models:
            resolve(m)
        return list(cfg.models)
    s = cfg.select
    chosen = filter_checkpoints(all_checkpoints(), list(s.d_model), list(s.experts), list(s.top_k), list(s.domain))
    chosen = [c for c in chosen if c.base_model is None]  # GRPO outputs are "after", not members
    if not chosen:
        raise UserError("models: empty and `select` matches no checkpoint in the index (`moelab checkpoints` lists "
                        "them)")
    return [c.name for c in chosen]


def run_job(kind: str, recipe: str, overrides: list[str], values: dict[str, Any]) -> Path:
    """Load a sub-recipe through the recipe table, the person's `overrides` then this job's `values` (a mapping)
    merged in, and run it; returns the run directory it wrote (`moelab.recipes.run_dir`)."""
    from moelab.recipes import load_recipe, run_dir

    cfg = load_recipe(recipe, overrides, values)
    if cfg.kind != kind:
        raise UserError(f"{recipe}: a {kind!r} recipe is needed here, it is a {cfg.kind!r} recipe")
    module, function = RUNNERS[kind].job.split(":")
    try:
        job = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError):
        raise UserError(f"`moelab {kind}` is not available in this lab ({RUNNERS[kind].job}); give its output "
                        f"instead ({kind}.output=PATH)") from None
    job(cfg)
    return run_dir(cfg)


def _instrument(kind: str, job: Any, models: list[str], folder: Path) -> Path | None:
    """An instrument's output file or directory: given (`output`), or run now in `folder`, or None (not asked
    for). Taskloss with `datasets`: one run per set in `folder`/<set>, their rows joined into `folder`/taskloss.csv."""
    from moelab.recipes import placed_in

    if job.output:
        path = Path(job.output)
        if not path.exists():
            raise UserError(f"{kind}.output: {path} does not exist")
        return _collected(kind, path) if path.is_dir() else path
    if not job.recipe:
        return None
    overrides, datasets = list(job.overrides), list(job.get("datasets") or [])
    if datasets:
        parts = [run_job(kind, job.recipe, overrides, {"models": models, "dataset": d, **placed_in(kind, folder / d)})
                 / RUNNERS[kind].table for d in datasets]
        return _concatenate_csv(parts, folder / RUNNERS[kind].table)
    return _handed_on(kind, run_job(kind, job.recipe, overrides, {"models": models, **placed_in(kind, folder)}))


def _handed_on(kind: str, run_dir: Path) -> Path:
    """What the analysis reads of an instrument's run: its run directory (a sweep) or the table in it."""
    return run_dir if RUNNERS[kind].whole_run else run_dir / RUNNERS[kind].table


def _collected(kind: str, folder: Path) -> Path:
    """A run's folder given as an instrument's output: the eval/taskloss run directory (its table) or the sweep
    run directory, as the unsharded run leaves it. A cluster array's tasks (`--shard`) write no table: say so."""
    table = folder / RUNNERS[kind].table
    if not table.is_file():
        raise UserError(f"{kind}.output: {folder} has no {table.name}; if a cluster array (--shard I/N) wrote it, "
                        f"run the same `moelab {kind}` command once without --shard to collect it")
    return _handed_on(kind, folder)


def _concatenate_csv(parts: list[Path], path: Path) -> Path:
    import csv

    from core.files import atomic_write_csv

    rows = [row for part in parts for row in csv.DictReader(part.open(newline=""))]
    return atomic_write_csv(path, rows, list(dict.fromkeys(c for row in rows for c in row)))


def trained_models(cfg: Any, models: list[str], after_dir: Path) -> dict[str, str]:
    """base model -> GRPO'd model swept in `after_dir`: the recipe's `grpo.trained`, else the index's base_model."""
    from checkpoints_index.index import resolve
    from inference.ttc.aggregate import read_metrics

    if cfg.grpo.trained:
        return {str(k): str(v) for k, v in cfg.grpo.trained.items()}
    trained = {}
    for name in dict.fromkeys(r["model"] for r in read_metrics(after_dir / "metrics.csv")):
        try:
            base = resolve(name).base_model
        except UserError:
            continue
        if base in models:
            trained[base] = name
    return trained


def run_grpo(cfg: Any, models: list[str], run_dir: Path) -> tuple[Path, dict[str, str]]:
    """GRPO every model (a finished run with the same identity is reused: `moelab.members.finished_grpo_run`),
    then sweep the GRPO'd models with the same sweep recipe."""
    from moelab.members import member_grpo_recipe, train_or_reuse
    from moelab.recipes import placed_in

    trained = {m: train_or_reuse(member_grpo_recipe(cfg.grpo.recipe, list(cfg.grpo.overrides), m, run_dir))
               for m in models}
    if not cfg.sweep.recipe:
        raise UserError("grpo.recipe is set but sweep.recipe is not: the after-GRPO sweep needs the sweep recipe")
    values = {"models": list(trained.values()), **placed_in("sweep", run_dir / "sweep" / "after")}
    return run_job("sweep", cfg.sweep.recipe, list(cfg.sweep.overrides), values), trained


def run_deficit(cfg: Any) -> Path:
    """Run (or reuse) every stage; returns report.md."""
    from inference.deficit.analysis import Instruments, analyse, write_deficit_csv
    from inference.deficit.figures import write_figures
    from inference.deficit.report import write_report
    from moelab.recipes import run_dir as run_dir_of

    started = time.monotonic()
    run_dir = run_dir_of(cfg)
    save_resolved_config(cfg, run_dir)
    models = select_models(cfg)
    print(f"[deficit] {len(models)} models: {', '.join(models)}", flush=True)
    inputs = Instruments(models=models)
    inputs.results_csv = _instrument("eval", cfg.eval, models, run_dir / "eval")
    inputs.taskloss_csv = _instrument("taskloss", cfg.taskloss, models, run_dir / "taskloss")
    inputs.before_dir = _instrument("sweep", cfg.sweep, models, run_dir / "sweep" / "before")
    if cfg.grpo.after_sweep:
        inputs.after_dir = Path(cfg.grpo.after_sweep)
        inputs.trained = trained_models(cfg, models, inputs.after_dir)
    elif cfg.grpo.recipe:
        inputs.after_dir, inputs.trained = run_grpo(cfg, models, run_dir)
    analysis = analyse(inputs, cfg)
    write_deficit_csv(analysis, run_dir / "deficit.csv")
    figures = write_figures(analysis, run_dir / "figures", cfg.analysis.tpp_reference)
    described = [f"{what} `{path}`" for what, path in (("results.csv", inputs.results_csv),
                                                      ("taskloss.csv", inputs.taskloss_csv),
                                                      ("sweep before GRPO", inputs.before_dir),
                                                      ("sweep after GRPO", inputs.after_dir)) if path]
    report = write_report(analysis, run_dir, cfg.run_name, described or ["none"], figures)
    print(f"[deficit] finished in {time.monotonic() - started:.0f} s: {run_dir / 'deficit.csv'}", flush=True)
    return report
