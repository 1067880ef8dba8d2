"""Recipe schema of `moelab posttrain` (kind `posttrain`): GRPO and its SFT-on-gold control over seeds."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import MISSING, config_field
from moelab.demo_schema import SFTControlSettings


@dataclass
class PosttrainConfig:
    kind: str = config_field("posttrain", "recipe type")
    run_name: str = config_field("toy", "outputs go to <output_dir>/<run_name>/; rerunning the same name resumes")
    output_dir: str = config_field("outputs/posttrain", "parent directory of runs")
    models: list[str] = config_field(MISSING, "members: checkpoint index names, hub ids or local directories")
    seeds: list[int] = config_field([0, 1, 2], "training seeds of every GRPO run and SFT control (>= 3 for a CI "
                                               "over seeds)")
    grpo_recipe: str = config_field(MISSING, "GRPO recipe run on every member and seed", must_exist=True)
    grpo_overrides: list[str] = config_field([], "key=value overrides of the GRPO recipe (its eval.split is where "
                                                 "the change is measured)")
    sft_control: SFTControlSettings = config_field(SFTControlSettings, "the control run beside every GRPO run")
    workers: int = config_field(2, "runs at once, each in its own process (the toy runs use one thread each)")
    results: str = config_field("outputs/posttrain/toy/posttrain.csv", "the table of per-seed and pooled changes")
