"""`moelab taskloss RECIPE.yaml [key=value ...]`: the command-line face of `inference.taskloss` (cheap to import)."""

from __future__ import annotations

import argparse

from inference.shards import add_shard_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="taskloss recipe YAML (kind: taskloss), e.g. configs/taskloss/toy.yaml")
    parser.add_argument("overrides", nargs="*",
                        help="dotted key=value overrides, e.g. dataset=gsm8k-4shot limit=100 backend.type=hf; "
                             "`moelab config fields taskloss` lists every key")
    add_shard_argument(parser, "whole models, round robin: models I, I+N, ...")


def run(args: argparse.Namespace) -> int:
    from core.config import load_config

    from inference.shards import finished_line, parse_shard
    from inference.taskloss_schema import TasklossConfig

    shard = parse_shard(args.shard) if getattr(args, "shard", None) is not None else None
    cfg = load_config(args.recipe, list(args.overrides), schema=TasklossConfig)
    from inference.taskloss import run_taskloss

    for name, path in run_taskloss(cfg, shard=shard).items():
        print(f"{name}: {path}")
    if shard is not None:
        print(finished_line(shard))
    return 0
