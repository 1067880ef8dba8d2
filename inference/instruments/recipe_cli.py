"""The command-line face that `moelab eval` and `moelab taskloss` share (cheap to import): a recipe,
key=value overrides and `--shard I/N` over models. The schema and the job's module are imported only
when the command runs, so `moelab --help` never loads lm-eval or torch."""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable

from inference.jobs.shards import add_shard_argument


def _attribute(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def recipe_command(kind: str, *, schema: str, runner: str, example: str, overrides_example: str
                   ) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """`(add_arguments, run)` of a subcommand that runs `runner(cfg, shard=...)` ("module:function") on a
    recipe validated by `schema` ("module:Class") and prints the paths it returns."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("recipe", help=f"{kind} recipe YAML (kind: {kind}), e.g. {example}")
        parser.add_argument("overrides", nargs="*", help=f"dotted key=value overrides, e.g. {overrides_example}; "
                                                         f"`moelab config fields {kind}` lists every key")
        add_shard_argument(parser, "whole models, round robin: models I, I+N, ...")

    def run(args: argparse.Namespace) -> int:
        from core.config import load_config
        from inference.jobs.shards import finished_line, parse_shard

        shard = parse_shard(args.shard) if getattr(args, "shard", None) is not None else None
        cfg = load_config(args.recipe, list(args.overrides), schema=_attribute(schema))
        for name, path in _attribute(runner)(cfg, shard=shard).items():
            print(f"{name}: {path}")
        if shard is not None:
            print(finished_line(shard))
        return 0

    return add_arguments, run
