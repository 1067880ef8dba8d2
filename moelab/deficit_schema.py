"""Recipe schema of `moelab deficit` (kind `deficit`): which models, which instruments, which analysis.

A deficit recipe names a set of models (by name, or by index filters) and, for each instrument, either
a sub-recipe to run (through `moelab.recipes`: `eval`, `taskloss`, `sweep`, `grpo`) or the output of a
run already made (a CSV path, a sweep run directory). Reusing is the default when both are given: a
precomputed path wins, so a recipe can point at a demo's sweeps and still run the evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from core.config import RunInNamedDir, config_field
from inference.ttc.estimators import STRATEGIES


@dataclass
class ModelSelection:
    d_model: list[int] = config_field([], "index filter: hidden sizes (empty: any)", at_least=1)
    experts: list[int] = config_field([], "index filter: numbers of experts (empty: any)", at_least=1)
    top_k: list[int] = config_field([], "index filter: top-k values (empty: any)", at_least=1)
    domain: list[str] = config_field([], "index filter: domains, e.g. math, toy (empty: any)")


@dataclass
class SubJob:
    recipe: Optional[str] = config_field(None, "recipe to run for the selected models (null: do not run)",
                                         must_exist=True)
    overrides: list[str] = config_field([], "key=value overrides of that recipe (models and where it writes are "
                                            "set by the deficit job)")
    output: Optional[str] = config_field(None, "output of a run already made, read instead of running: results.csv "
                                               "(eval), taskloss.csv (taskloss), or that run's output_dir; a sweep "
                                               "run directory with scored.parquet and metrics.csv (sweep)")


@dataclass
class TasklossJob(SubJob):
    datasets: list[str] = config_field([], "taskloss sets to run the recipe on, one run each (its `dataset` key; "
                                           "e.g. [gsm8k-4shot, triviaqa-4shot]); empty: the recipe's own")


@dataclass
class GRPOJob:
    recipe: Optional[str] = config_field(None, "GRPO recipe run on every model before the after-GRPO sweep "
                                               "(null: no GRPO unless after_sweep is given)", must_exist=True)
    overrides: list[str] = config_field([], "key=value overrides of the GRPO recipe")
    after_sweep: Optional[str] = config_field(None, "sweep run directory of the GRPO'd models, read instead of "
                                                    "training and sweeping again")
    trained: dict[str, str] = config_field({}, "base model -> its GRPO'd model's name in after_sweep (default: "
                                               "the index's base_model of each swept model)")


@dataclass
class TaskPair:
    eval_task: Optional[str] = config_field(None, "lm-eval task name in results.csv (null: none)")
    eval_metric: str = config_field("exact_match", "metric column value in results.csv")
    eval_filter: str = config_field("flexible-extract", "filter column value in results.csv (`none` for tasks "
                                                        "without filters)")
    loss_task: Optional[str] = config_field(None, "task name in taskloss.csv (null: none)")


@dataclass
class Analysis:
    strategy: Literal[STRATEGIES] = config_field(
        "majority", "TTC strategy whose gap is tested at k=1 and k=N (figure d's lines)")
    budgets: Optional[list[int]] = config_field(None, "sample budgets drawn in figure d (null: powers of 2 up to N)",
                                                at_least=1)
    bootstrap: int = config_field(2000, "bootstrap resamples over problems for every CI", at_least=0)
    seed: int = config_field(0, "bootstrap seed", at_least=0)
    level: float = config_field(0.95, "confidence level of every interval", above=0, below=1)
    pairs: list[list[str]] = config_field([], "extra model pairs [a, b] to test (a: the one expected better)")
    tpp_reference: float = config_field(20.0, "TPP of the reference line in figure c (the study's optimum ~20)",
                                        above=0)
    loss_column: Literal["bits_per_token", "bits_per_byte", "bits_per_token_weighted"] = config_field(
        "bits_per_token", "taskloss.csv column used as task loss")


@dataclass
class DeficitConfig(RunInNamedDir):
    kind: str = config_field("deficit", "recipe type")
    run_name: str = config_field("deficit", "outputs go to <output_dir>/<run_name>/")
    output_dir: str = config_field("outputs/deficit", "parent directory of deficit runs")
    models: list[str] = config_field([], "models by index name (empty: every model `select` matches)")
    select: ModelSelection = config_field(ModelSelection, "index filters, used when `models` is empty")
    eval: SubJob = config_field(SubJob, "few-shot benchmark accuracy (`moelab eval`, results.csv)")
    taskloss: TasklossJob = config_field(TasklossJob, "task losses (`moelab taskloss`, taskloss.csv)")
    sweep: SubJob = config_field(SubJob, "test-time compute sweep before GRPO (`moelab sweep`)")
    grpo: GRPOJob = config_field(GRPOJob, "optional GRPO runs and the sweep after them")
    reasoning: TaskPair = config_field(TaskPair, "the reasoning task: accuracy and task loss")
    memorization: TaskPair = config_field(TaskPair, "the memorization task: accuracy and task loss")
    analysis: Analysis = config_field(Analysis, "gap tests, intervals and figures")

    @staticmethod
    def cross_check(cfg: Any) -> None:
        """Every sub-recipe the run will load, loaded now (`moelab.recipes.check_sub_recipe`): the eval sub-job
        must not run for hours before a bad taskloss override is found."""
        from moelab.recipes import check_sub_recipe

        models = {"models": list(cfg.models) or ["recipe-check"]}
        for kind in ("eval", "taskloss", "sweep"):
            job = cfg[kind]
            if job.recipe and not job.output:
                datasets = list(job.get("datasets") or [None])
                for dataset in datasets:
                    chosen = {"dataset": dataset} if dataset else {}
                    check_sub_recipe(f"{kind}.recipe", kind, job.recipe, list(job.overrides), {**models, **chosen})
        if cfg.grpo.recipe and not cfg.grpo.after_sweep:
            check_sub_recipe("grpo.recipe", "grpo", cfg.grpo.recipe, list(cfg.grpo.overrides),
                             {"model": {"name": "recipe-check"}})
