"""`moelab eval RECIPE.yaml [key=value ...]`: the command-line face of `inference.lm_eval_run` (cheap to import)."""

from __future__ import annotations

import argparse

from inference.shards import add_shard_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="eval recipe YAML (kind: eval), e.g. configs/eval/toy.yaml")
    parser.add_argument("overrides", nargs="*",
                        help="dotted key=value overrides, e.g. 'models=[toy-d64-E8-k2]' limit=50 backend.type=hf "
                             "data_files.gsm8k.test=FILE; `moelab config fields eval` lists every key")
    add_shard_argument(parser, "whole models, round robin: models I, I+N, ...")


def run(args: argparse.Namespace) -> int:
    from core.config import load_config

    from inference.lm_eval_schema import EvalConfig
    from inference.shards import finished_line, parse_shard

    shard = parse_shard(args.shard) if getattr(args, "shard", None) is not None else None
    cfg = load_config(args.recipe, list(args.overrides), schema=EvalConfig)
    from inference.lm_eval_run import run_eval

    for name, path in run_eval(cfg, shard=shard).items():
        print(f"{name}: {path}")
    if shard is not None:
        print(finished_line(shard))
    return 0
