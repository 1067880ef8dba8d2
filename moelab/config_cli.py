"""`moelab config show RECIPE.yaml [key=value ...]`: the merged, validated recipe, as a run would see it."""

from __future__ import annotations

import argparse

from core.config import config_to_yaml, describe_fields
from moelab.recipes import load_recipe, schema_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show", "fields"],
                        help="show: print RECIPE merged with overrides; fields: list a recipe kind's keys with help")
    parser.add_argument("recipe", help="recipe YAML (show) or recipe kind (fields), e.g. sweep, grpo")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. sampling.num_samples=64")


def run(args: argparse.Namespace) -> int:
    if args.action == "fields":
        for key, type_name, help_text in describe_fields(schema_for(args.recipe, "moelab config fields")):
            print(f"{key:40s} {type_name:10s} {help_text}")
        return 0
    print(config_to_yaml(load_recipe(args.recipe, args.overrides)), end="")
    return 0
