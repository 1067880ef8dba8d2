"""Recipe schema of `moelab posttrain` (kind `posttrain`): GRPO and its SFT-on-gold control over seeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import MISSING, config_field
from core.errors import UserError
from moelab.demo_schema import SFTControlSettings


@dataclass
class PosttrainConfig:
    kind: str = config_field("posttrain", "recipe type")
    run_name: str = config_field("toy", "outputs go to <output_dir>/<run_name>/; rerunning the same name resumes")
    output_dir: str = config_field("outputs/posttrain", "parent directory of runs")
    models: list[str] = config_field(MISSING, "members: checkpoint index names, hub ids or local directories")
    seeds: list[int] = config_field([0, 1, 2], "training seeds of every GRPO run and SFT control (>= 3 for a CI "
                                               "over seeds)", at_least=0)
    grpo_recipe: str = config_field(MISSING, "GRPO recipe run on every member and seed", must_exist=True)
    grpo_overrides: list[str] = config_field([], "key=value overrides of the GRPO recipe (its eval.split is where "
                                                 "the change is measured)")
    sft_control: SFTControlSettings = config_field(SFTControlSettings, "the control run beside every GRPO run")
    workers: int = config_field(2, "runs at once, each in its own process (the toy runs use one thread each)",
                                at_least=1)
    results: str = config_field("outputs/posttrain/toy/posttrain.csv", "the table of per-seed and pooled changes")

    @staticmethod
    def run_dir(cfg: Any) -> Path:
        """The run's folder: <output_dir>/<run_name> (seed<s>/ per seed; the table goes to `results`)."""
        return Path(cfg.output_dir) / cfg.run_name

    @staticmethod
    def placed_in(run_dir: Path) -> dict[str, Any]:
        """The values that make `run_dir` the run's folder, the table `results` inside it (as the defaults)."""
        return {"output_dir": str(Path(run_dir).parent), "run_name": Path(run_dir).name,
                "results": str(Path(run_dir) / "posttrain.csv")}

    @staticmethod
    def cross_check(cfg: Any) -> None:
        """Members and seeds listed once each, and the GRPO recipe loaded now with its overrides."""
        from moelab.recipes import check_sub_recipe

        for key in ("models", "seeds"):
            values = list(cfg[key])
            if not values:
                raise UserError(f"{key}: list at least one")
            if len(set(values)) < len(values):
                raise UserError(f"{key}: {sorted({v for v in values if values.count(v) > 1})} listed more than once")
        check_sub_recipe("grpo_recipe", "grpo", cfg.grpo_recipe, list(cfg.grpo_overrides),
                         {"model": {"name": "recipe-check"}})
