"""`moelab eval RECIPE.yaml [key=value ...]`: the command-line face of `inference.lm_eval_run` (cheap to import)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="eval recipe YAML (kind: eval), e.g. configs/eval/toy.yaml")
    parser.add_argument("overrides", nargs="*",
                        help="dotted key=value overrides, e.g. 'models=[toy-d64-E8-k2]' limit=50 backend.type=hf "
                             "data_files.gsm8k.test=FILE; `moelab config fields eval` lists every key")


def run(args: argparse.Namespace) -> int:
    from core.config import load_config

    from inference.lm_eval_schema import EvalConfig

    cfg = load_config(args.recipe, list(args.overrides), schema=EvalConfig)
    from inference.lm_eval_run import run_eval

    for name, path in run_eval(cfg).items():
        print(f"{name}: {path}")
    return 0
