"""`moelab taskloss RECIPE.yaml [key=value ...]`: the command-line face of `inference.taskloss` (cheap to import)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="taskloss recipe YAML (kind: taskloss), e.g. configs/taskloss/toy.yaml")
    parser.add_argument("overrides", nargs="*",
                        help="dotted key=value overrides, e.g. dataset=gsm8k-4shot limit=100 backend.type=hf; "
                             "`moelab config fields taskloss` lists every key")


def run(args: argparse.Namespace) -> int:
    from core.config import load_config

    from inference.taskloss_schema import TasklossConfig

    cfg = load_config(args.recipe, list(args.overrides), schema=TasklossConfig)
    from inference.taskloss import run_taskloss

    for name, path in run_taskloss(cfg).items():
        print(f"{name}: {path}")
    return 0
