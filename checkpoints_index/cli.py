"""`moelab checkpoints`: list, filter, show and materialize the models the index knows."""

from __future__ import annotations

import argparse
import csv
import sys

from checkpoints_index.index import CSV_COLUMNS, all_checkpoints, filter_checkpoints, resolve
from core.errors import UserError


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["list", "materialize"], default="list",
                        help="list (default) or materialize NAME --random-init --out DIR")
    parser.add_argument("name", nargs="?", help="checkpoint name (for materialize)")
    parser.add_argument("--show", metavar="NAME", help="print every field of one checkpoint")
    parser.add_argument("--d-model", type=_int_list, help="filter: hidden sizes, e.g. 512 or 512,1024")
    parser.add_argument("--experts", type=_int_list, help="filter: numbers of experts, e.g. 8,16")
    parser.add_argument("--top-k", type=_int_list, help="filter: top-k values, e.g. 2")
    parser.add_argument("--domain", help="filter: math, code, toy, local (comma-separated)")
    parser.add_argument("--format", choices=["table", "csv"], default="table", help="output format")
    parser.add_argument("--random-init", action="store_true", help="materialize: random weights (the only mode)")
    parser.add_argument("--out", help="materialize: output directory")
    parser.add_argument("--layers", type=int, help="materialize: fewer layers than the real model (tests)")
    parser.add_argument("--dtype", default="bfloat16", help="materialize: float32 or bfloat16 (default)")
    parser.add_argument("--seed", type=int, default=0, help="materialize: weight seed")


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _print_table(rows: list) -> None:
    header = ["name", "domain", "d", "L", "heads", "E", "k", "total", "active", "TPP", "density"]
    body = [[r.name, r.domain, r.d_model, r.num_layers, r.num_heads, r.num_experts, r.top_k, _human(r.total_params),
             _human(r.active_params), f"{r.tpp:.1f}" if r.training_tokens else "-", f"{r.density:.3f}"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    for line in [header, *body]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    print(f"{len(rows)} checkpoints")


def run(args: argparse.Namespace) -> int:
    if args.action == "materialize":
        if not args.name or not args.out:
            raise UserError("usage: moelab checkpoints materialize NAME --random-init --out DIR [--layers N]")
        if not args.random_init:
            raise UserError("materialize needs --random-init (real weights come from the hub: pass the hub id "
                            "or a downloaded directory to any command instead)")
        from checkpoints_index.loading import materialize_random

        out = materialize_random(args.name, args.out, layers=args.layers, seed=args.seed, dtype=args.dtype)
        print(f"wrote random-init {resolve(args.name).name} to {out}")
        return 0
    if args.show:
        info = resolve(args.show)
        for key, value in info.as_row().items():
            print(f"{key:14s} {value}")
        return 0
    domains = args.domain.split(",") if args.domain else None
    rows = filter_checkpoints(all_checkpoints(), args.d_model, args.experts, args.top_k, domains)
    if args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for info in rows:
            writer.writerow(info.as_row())
    else:
        _print_table(rows)
    return 0
