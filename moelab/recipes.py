"""Every recipe kind the lab runs, in one explicit table: `kind` -> the schema class, imported lazily.

The application layer is the only code that knows every job, so the table lives here; a new recipe
kind is one line below. Lower layers load their own recipes with their own schema
(`core.config.load_config(path, overrides, schema=...)`); this module serves code that gets a YAML
of any kind (`moelab config show`, the demo's sub-recipes, tests), and says where a job of any kind
writes (`run_dir`) and how to make it write elsewhere (`placed_in`), each schema's own rule.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from core.config import load_config, recipe_kind
from core.errors import UserError

RECIPES: dict[str, str] = {
    "sweep": "inference.sweep.schema:SweepConfig",
    "grpo": "rl.schema:GRPORecipe",
    "toy_train": "checkpoints_index.toy.schema:ToyTrainConfig",
    "toy_grid": "inference.toy.schema:ToyGridConfig",
    "demo": "moelab.demo_schema:DemoConfig",
    "deficit": "moelab.deficit_schema:DeficitConfig",
    "posttrain": "moelab.posttrain_schema:PosttrainConfig",
    "eval": "inference.instruments.lm_eval_schema:EvalConfig",
    "taskloss": "inference.instruments.taskloss_schema:TasklossConfig",
}


def schema_for(kind: object, source: str = "recipe") -> type:
    """The schema class of a recipe kind; an unknown kind is one `UserError` naming the known ones."""
    if not isinstance(kind, str) or kind not in RECIPES:
        raise UserError(f"{source}: key 'kind' must name a recipe type ({', '.join(sorted(RECIPES))}); got {kind!r}")
    module, name = RECIPES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def load_recipe(path: str | Path, overrides: list[str] | None = None,
                values: Mapping[str, Any] | None = None) -> DictConfig:
    """Load a recipe of any kind: its `kind:` (or a `kind=` override) picks the schema. `values`: what the job
    that runs it sets itself, a mapping merged after the overrides (`core.config.load_config`)."""
    return load_config(path, overrides, schema=schema_for(recipe_kind(path, overrides), str(path)), values=values)


def run_dir(cfg: Any) -> Path:
    """The folder a job of any kind writes its outputs into: its schema's `run_dir(cfg)`, picked by `cfg.kind`
    (so a config re-created from YAML, without its dataclass, works too)."""
    return Path(schema_for(cfg.kind).run_dir(cfg))


def placed_in(kind: str, folder: str | Path) -> dict[str, Any]:
    """The values that make a `kind` job write into `folder`: its schema's `placed_in`, the inverse of `run_dir`
    (`run_dir` of the config merged with them is `folder`). A composite job merges them into its sub-job's config."""
    return schema_for(kind).placed_in(Path(folder))


def check_sub_recipe(key: str, kind: str, path: str | Path, overrides: list[str],
                     values: Mapping[str, Any] | None = None) -> None:
    """Load a sub-recipe of a composite job (demo, deficit, posttrain) with its overrides, as that job will
    load it later: a bad value in it must stop the job before its first stage, not after hours of them, and
    `moelab config show` of the composite recipe must reject it too. `values` are stand-ins for what the job
    sets itself (models, ...), merged after a stand-in run directory; `key` is the composite recipe's key
    that names `path`."""
    try:
        cfg = load_recipe(path, overrides, {**placed_in(kind, "recipe-check"), **(values or {})})
    except UserError as err:
        raise UserError(f"{key}: {err}") from None
    if cfg.kind != kind:
        raise UserError(f"{key}: {path} is a {cfg.kind!r} recipe; a {kind!r} recipe is needed here")
