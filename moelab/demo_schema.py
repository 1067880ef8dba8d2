"""Recipe schema of `moelab demo` (kind `demo`): the study's pipeline (TTC, GRPO, deficit) as one recipe.

A demo names a family of models, a sweep recipe and a GRPO recipe; it runs the sweep on every
member, GRPO on every member, the same sweep on every GRPO'd member, and writes the plots and a
report. `quick` holds overrides that `--quick` applies on top, so the quick run is the same
pipeline on less work, never a different code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from core.config import MISSING, config_field
from inference.ttc.estimators import STRATEGIES


@dataclass
class QuickOverrides:
    models: list[str] = config_field([], "members for --quick (empty: all of `models`)")
    sweep_overrides: list[str] = config_field([], "extra key=value overrides of the sweep recipe under --quick")
    grpo_overrides: list[str] = config_field([], "extra key=value overrides of the GRPO recipe under --quick")
    deficit_overrides: list[str] = config_field([], "extra key=value overrides of the deficit recipe under --quick")


@dataclass
class SFTControlSettings:
    """`rl.sft_control`: the same member, problems and greedy eval as its GRPO run, trained on gold solutions."""

    enabled: bool = config_field(True, "run the SFT-on-gold control beside every member's GRPO run")
    steps: int = config_field(10, "optimizer steps", at_least=1)
    learning_rate: float = config_field(1e-4, "constant AdamW learning rate (GRPO's toy peak LR)", above=0)
    batch_size: int = config_field(64, "gold solutions per step", at_least=1)
    seed: int = config_field(0, "data order seed", at_least=0)


@dataclass
class DemoConfig:
    kind: str = config_field("demo", "recipe type")
    run_name: str = config_field("toy", "outputs go to <output_dir>/<run_name>/; rerunning the same name resumes")
    output_dir: str = config_field("outputs/demo", "parent directory of demo runs")
    models: list[str] = config_field(MISSING, "the family: checkpoint index names, hub ids or local directories")
    sweep_recipe: str = config_field(MISSING, "sweep recipe run before and after GRPO", must_exist=True)
    sweep_overrides: list[str] = config_field([], "key=value overrides of the sweep recipe")
    grpo_recipe: str = config_field(MISSING, "GRPO recipe run on every member", must_exist=True)
    grpo_recipes: dict[str, str] = config_field({}, "per-member GRPO recipe (member -> recipe), e.g. the ZeRO-3 "
                                                    "recipe for a 13B member; members not listed use grpo_recipe")
    grpo_overrides: list[str] = config_field([], "key=value overrides of the GRPO recipe")
    deficit_recipe: Optional[str] = config_field(
        None, "deficit recipe (`moelab deficit`) analysing the demo's sweeps: its eval and taskloss sub-jobs run on "
              "the members; null = the analysis of the sweeps alone", must_exist=True)
    deficit_overrides: list[str] = config_field([], "key=value overrides of the deficit recipe")
    sft_control: SFTControlSettings = config_field(SFTControlSettings, "the SFT-on-gold control reported beside GRPO")
    budgets: list[int] = config_field([1, 4, 32], "sample budgets k drawn as lines in the cross-model plot",
                                      at_least=1)
    strategies: list[Literal[STRATEGIES]] = config_field(
        ["pass", "majority", "best_of_n"], "strategies in per-member plots")
    quick: QuickOverrides = config_field(QuickOverrides, "what `moelab demo --quick` changes")

    @staticmethod
    def run_dir(cfg: Any, quick: bool = False) -> Path:
        """The run's folder: <output_dir>/<run_name>, or <output_dir>/<run_name>-quick for `--quick`."""
        return Path(cfg.output_dir) / (f"{cfg.run_name}-quick" if quick else cfg.run_name)

    @staticmethod
    def placed_in(run_dir: Path) -> dict[str, Any]:
        """The values that make `run_dir` the run's folder (the inverse of `run_dir`, without --quick)."""
        return {"output_dir": str(Path(run_dir).parent), "run_name": Path(run_dir).name}

    @staticmethod
    def cross_check(cfg: Any) -> None:
        """The sweep, GRPO and deficit sub-recipes loaded now, with and without the --quick overrides, with
        stand-ins for what the demo sets (`moelab.recipes.check_sub_recipe`): the deficit stage comes last,
        and a bad value in its overrides must not wait for the sweeps and GRPO runs before it."""
        from moelab.recipes import check_sub_recipe

        models = {"models": list(cfg.models)}
        for quick in (False, True):
            extra = cfg.quick if quick else QuickOverrides()
            under = " with quick.*_overrides (--quick)" if quick else ""
            check_sub_recipe(f"sweep_recipe{under}", "sweep", cfg.sweep_recipe,
                             [*cfg.sweep_overrides, *extra.sweep_overrides], models)
            for key, recipe in [("grpo_recipe", cfg.grpo_recipe),
                                *((f"grpo_recipes.{m}", r) for m, r in cfg.grpo_recipes.items())]:
                check_sub_recipe(f"{key}{under}", "grpo", recipe, [*cfg.grpo_overrides, *extra.grpo_overrides],
                                 {"model": {"name": "recipe-check"}})
            if cfg.deficit_recipe:
                check_sub_recipe(f"deficit_recipe{under}", "deficit", cfg.deficit_recipe,
                                 [*cfg.deficit_overrides, *extra.deficit_overrides],
                                 {**models, "sweep": {"recipe": None}, "grpo": {"recipe": None}})
