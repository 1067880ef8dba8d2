"""`moelab sweep RECIPE.yaml [key=value ...]`: the command-line face of `inference.sweep` (cheap to import)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="sweep recipe YAML (kind: sweep), e.g. configs/sweep/toy.yaml")
    parser.add_argument("overrides", nargs="*",
                        help="dotted key=value overrides, e.g. sampling.num_samples=256 'models=[toy-d64-E8-k2]' "
                             "stages=[score,aggregate,plot]; `moelab config fields sweep` lists every key")


def run(args: argparse.Namespace) -> int:
    from core.config import load_config

    from inference.sweep_schema import SweepConfig

    cfg = load_config(args.recipe, list(args.overrides), schema=SweepConfig)
    from inference.sweep import run_sweep

    outputs = run_sweep(cfg)
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0
