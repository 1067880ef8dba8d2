"""`moelab grpo RECIPE.yaml [key=value ...]`: GRPO post-training from a recipe (see rl/schema.py).

    moelab grpo configs/grpo/toy.yaml
    moelab grpo configs/grpo/toy.yaml max_steps=10 output_dir=outputs/grpo/try
    moelab grpo configs/grpo/toy.yaml resume=true                  # continue after a kill
    moelab grpo configs/grpo/paper_d1024.yaml launch.num_processes=8
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="grpo recipe YAML (configs/grpo/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. max_steps=10 grpo.beta=0")


def run(args: argparse.Namespace) -> int:
    from core.config import load_config
    from rl.launch import run_recipe
    from rl.schema import GRPORecipe

    cfg = load_config(args.recipe, args.overrides, schema=GRPORecipe)
    return run_recipe(cfg)
