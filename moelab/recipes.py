"""Every recipe kind the lab runs, in one explicit table: `kind` -> the schema class, imported lazily.

The application layer is the only code that knows every job, so the table lives here; a new recipe
kind is one line below. Lower layers load their own recipes with their own schema
(`core.config.load_config(path, overrides, schema=...)`); this module serves code that gets a YAML
of any kind (`moelab config show`, the demo's sub-recipes, tests).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from omegaconf import DictConfig

from core.config import load_config, recipe_kind
from core.errors import UserError

RECIPES: dict[str, str] = {
    "sweep": "inference.sweep_schema:SweepConfig",
    "grpo": "rl.schema:GRPORecipe",
    "toy_train": "checkpoints_index.toy.schema:ToyTrainConfig",
    "toy_grid": "checkpoints_index.toy.schema:ToyGridConfig",
    "demo": "moelab.demo_schema:DemoConfig",
    "deficit": "moelab.deficit_schema:DeficitConfig",
    "posttrain": "moelab.posttrain_schema:PosttrainConfig",
    "eval": "inference.lm_eval_schema:EvalConfig",
    "taskloss": "inference.taskloss_schema:TasklossConfig",
}


def schema_for(kind: object, source: str = "recipe") -> type:
    """The schema class of a recipe kind; an unknown kind is one `UserError` naming the known ones."""
    if not isinstance(kind, str) or kind not in RECIPES:
        raise UserError(f"{source}: key 'kind' must name a recipe type ({', '.join(sorted(RECIPES))}); got {kind!r}")
    module, name = RECIPES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> DictConfig:
    """Load a recipe of any kind: its `kind:` (or a `kind=` override) picks the schema."""
    return load_config(path, overrides, schema=schema_for(recipe_kind(path, overrides), str(path)))


def check_sub_recipe(key: str, kind: str, path: str | Path, overrides: list[str]) -> None:
    """Load a sub-recipe of a composite job (demo, deficit, posttrain) with its overrides, as that job will
    load it later: a bad value in it must stop the job before its first stage, not after hours of them, and
    `moelab config show` of the composite recipe must reject it too. `overrides` end with stand-ins for
    what the job sets itself (models, output_dir); `key` is the composite recipe's key that names `path`."""
    try:
        cfg = load_recipe(path, overrides)
    except UserError as err:
        raise UserError(f"{key}: {err}") from None
    if cfg.kind != kind:
        raise UserError(f"{key}: {path} is a {cfg.kind!r} recipe; a {kind!r} recipe is needed here")
