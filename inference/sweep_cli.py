"""`moelab sweep RECIPE.yaml [key=value ...]`: the command-line face of `inference.sweep` (cheap to import)."""

from __future__ import annotations

import argparse
import re


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="sweep recipe YAML (kind: sweep), e.g. configs/sweep/toy.yaml")
    parser.add_argument("overrides", nargs="*",
                        help="dotted key=value overrides, e.g. sampling.num_samples=256 'models=[toy-d64-E8-k2]' "
                             "stages=[score,aggregate,plot]; `moelab config fields sweep` lists every key")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="generate only shard I of N (0 <= I < N: every N-th problem from the I-th) into the "
                             "shared sample store, e.g. one process per node; afterwards the same command without "
                             "--shard generates nothing the shards stored and scores, aggregates and plots")


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` (0 <= i < n): this process generates shard i of n (`inference.sweep.shard_of_plan`)."""
    from core.errors import UserError

    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise UserError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4 ... 3/4); got {text!r}")
    return int(match[1]), int(match[2])


def run(args: argparse.Namespace) -> int:
    from core.config import load_config

    from inference.sweep_schema import SweepConfig

    cfg = load_config(args.recipe, list(args.overrides), schema=SweepConfig)
    from inference.sweep import run_sweep

    shard = parse_shard(args.shard) if getattr(args, "shard", None) is not None else None
    outputs = run_sweep(cfg, shard=shard)
    for name, path in outputs.items():
        print(f"{name}: {path}")
    if shard is not None:
        print(f"shard {shard[0]}/{shard[1]} generated; when all {shard[1]} have, run the same command without --shard")
    return 0
