"""Recipe schema of `moelab toy grid` (kind `toy_grid`), beside its runner (`inference.toy.grid`).
Cheap to import, no torch here. Every grid member starts from a `toy_train` recipe
(`checkpoints_index.toy.schema.ToyTrainConfig`) and differs in E, k, seed and data regime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.config import config_field


@dataclass
class ToyRegime:
    name: str = config_field("20k", "the regime's label (a folder name and a column of toy-grid.csv)")
    num_train_problems: int = config_field(20000, "distinct training problems at the grid's one token budget",
                                           at_least=1)
    train_overrides: dict = config_field({}, "dotted overrides for this regime's members, after the grid's "
                                             "(a recipe chosen per regime on the validation split)")


@dataclass
class ToyExtraMember:
    regime: str = config_field("20k", "one of the grid's regime names")
    experts: int = config_field(8, "E", at_least=2)
    top_k: int = config_field(4, "k", at_least=2)
    seed: int = config_field(0, "seed", at_least=0)


@dataclass
class ToyGridConfig:
    """`moelab toy grid` (kind `toy_grid`): the toy sparsity grid over E, seeds and data regimes."""

    kind: str = config_field("toy_grid", "recipe type")
    train_recipe: str = config_field("configs/toy/train.yaml", "the base toy_train recipe every member starts from",
                                     must_exist=True)
    train_overrides: dict = config_field({}, "dotted overrides applied to the base recipe for every member")
    experts: list[int] = config_field([2, 4, 8, 16, 32], "E values of the grid (E = top_k is dense)", at_least=2)
    top_k: int = config_field(2, "k of every grid member (fixed active parameters; k=1 gives Mixtral's router no "
                                 "task gradient)", at_least=2)
    seeds: list[int] = config_field([0, 1, 2], "training seeds per (regime, E)", at_least=0)
    regimes: list[ToyRegime] = config_field([ToyRegime()], "data regimes (unique training problems)")
    extra_members: list[ToyExtraMember] = config_field([], "members outside the grid, e.g. the shipped E8-k4")
    num_test: int = config_field(500, "held-out problems per member (seed 0: the same for all)", at_least=1)
    eval_split: Literal["validation", "test"] = config_field(
        "test", "the held-out split members are measured on: validation while a recipe is being chosen, test once "
                "for the chosen one")
    num_seen: int = config_field(500, "of each member's own training problems, measured greedily too", at_least=1)
    workers: int = config_field(2, "members trained and measured at once (one torch thread each)", at_least=1)
    models_dir: str = config_field("outputs/toy_grid/models", "member weights: <regime>/seed<s>/<member>")
    results: str = config_field("outputs/toy_grid/toy-grid.csv", "the per-member table; -summary.csv and .png "
                                                                   "are written beside it")

    @staticmethod
    def run_dir(cfg: Any) -> Path:
        """The run's folder: the folder of `results` (the table, its summary and figure; `models_dir` is its
        weights store, <results folder>/models by default)."""
        return Path(cfg.results).parent

    @staticmethod
    def placed_in(run_dir: Path) -> dict[str, Any]:
        """The values that make `run_dir` the run's folder, its weights in `run_dir`/models (as the defaults)."""
        return {"results": str(Path(run_dir) / "toy-grid.csv"), "models_dir": str(Path(run_dir) / "models")}
