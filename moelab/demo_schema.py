"""Recipe schema of `moelab demo` (kind `demo`): the study's pipeline (TTC, GRPO, deficit) as one recipe.

A demo names a family of models, a sweep recipe and a GRPO recipe; it runs the sweep on every
member, GRPO on every member, the same sweep on every GRPO'd member, and writes the plots and a
report. `quick` holds overrides that `--quick` applies on top, so the quick run is the same
pipeline on less work, never a different code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from core.config import MISSING, config_field


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
    steps: int = config_field(10, "optimizer steps")
    learning_rate: float = config_field(1e-4, "constant AdamW learning rate (GRPO's toy peak LR)")
    batch_size: int = config_field(64, "gold solutions per step")
    seed: int = config_field(0, "data order seed")


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
    budgets: list[int] = config_field([1, 4, 32], "sample budgets k drawn as lines in the cross-model plot")
    strategies: list[str] = config_field(["pass", "majority", "best_of_n"], "strategies in per-member plots")
    quick: QuickOverrides = config_field(QuickOverrides, "what `moelab demo --quick` changes")
