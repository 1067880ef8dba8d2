"""`moelab config show RECIPE.yaml [key=value ...]`: the merged, validated recipe, as a run would see it."""

from __future__ import annotations

import argparse

from moelab.config import RECIPE_KINDS, _import_schemas, config_to_yaml, describe_fields, load_config
from moelab.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show", "fields"],
                        help="show: print RECIPE merged with overrides; fields: list a recipe kind's keys with help")
    parser.add_argument("recipe", help="recipe YAML (show) or recipe kind (fields), e.g. sweep, grpo")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. sampling.n=64")


def run(args: argparse.Namespace) -> int:
    if args.action == "fields":
        _import_schemas()
        if args.recipe not in RECIPE_KINDS:
            raise UserError(f"unknown recipe kind '{args.recipe}'; known: {', '.join(sorted(RECIPE_KINDS))}")
        for key, type_name, help_text in describe_fields(RECIPE_KINDS[args.recipe]):
            print(f"{key:40s} {type_name:10s} {help_text}")
        return 0
    print(config_to_yaml(load_config(args.recipe, args.overrides)), end="")
    return 0
