"""`moelab push DIR --repo-id ID`: upload a sweep (as a dataset) or a finished GRPO run (as a model) to the hub.

    moelab push outputs/sweeps/toy --repo-id me/toy-ttc-sweep                 # scored.parquet, metrics.csv, card
    moelab push outputs/sweeps/toy --repo-id me/toy-ttc-sweep --completions   # + the sample store (raw text)
    moelab push outputs/grpo/toy-d64-E8-k2 --repo-id me/toy-E8-grpo           # final model + model card
    moelab push DIR --repo-id ID --dry-run                                    # list the files, print the card

A directory with `final/config.json` is a GRPO run (`rl.hub`), anything else a sweep (`inference.jobs.hub`).
Repositories are created private unless `--public`. Log in first (`hf auth login` or HF_TOKEN).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="a sweep's output directory or a GRPO run's output_dir")
    parser.add_argument("--repo-id", required=True, help="hub repository, e.g. me/toy-ttc-sweep")
    parser.add_argument("--public", action="store_true", help="create the repository public (default: private)")
    parser.add_argument("--completions", action="store_true", help="sweeps: also upload the sample store's shards")
    parser.add_argument("--dry-run", action="store_true", help="print what would be uploaded; upload nothing")


def run(args: argparse.Namespace) -> int:
    from core.errors import UserError

    directory = Path(args.directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory (a sweep's output directory or a GRPO run's output_dir)")
    if (directory / "final" / "config.json").is_file():
        from rl.hub import push_run

        result = push_run(directory, args.repo_id, private=not args.public, dry_run=args.dry_run)
        kind = "model"
    else:
        from inference.jobs.hub import push_sweep

        result = push_sweep(directory, args.repo_id, private=not args.public, completions=args.completions,
                            dry_run=args.dry_run)
        kind = "dataset"
    if args.dry_run:
        print(f"would upload to {kind} {args.repo_id}: " + ", ".join(result["files"]))
        print(result["card"])
    else:
        print(f"uploaded {len(result['files'])} files to {kind} https://huggingface.co/"
              f"{'datasets/' if kind == 'dataset' else ''}{args.repo_id}")
    return 0
