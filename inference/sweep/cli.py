"""`moelab sweep RECIPE.yaml [key=value ...]`: the command-line face of `inference.sweep.run` (cheap to import)."""

from __future__ import annotations

import argparse

from inference.jobs.shards import add_shard_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="sweep recipe YAML (kind: sweep), e.g. configs/sweep/toy.yaml")
    parser.add_argument("overrides", nargs="*",
                        help="dotted key=value overrides, e.g. sampling.num_samples=256 'models=[toy-d64-E8-k2]' "
                             "stages=[score,aggregate,plot]; `moelab config fields sweep` lists every key")
    add_shard_argument(parser, "the generate stage only: whole models, or with fewer models than tasks a "
                               "model's problems, into the shared sample store")


def run(args: argparse.Namespace) -> int:
    from core.config import load_config
    from inference.jobs.shards import finished_line, parse_shard
    from inference.sweep.schema import SweepConfig

    shard = parse_shard(args.shard) if getattr(args, "shard", None) is not None else None
    cfg = load_config(args.recipe, list(args.overrides), schema=SweepConfig)
    from inference.sweep.run import run_sweep

    outputs = run_sweep(cfg, shard=shard)
    for name, path in outputs.items():
        print(f"{name}: {path}")
    if shard is not None:
        print(finished_line(shard))
    return 0
