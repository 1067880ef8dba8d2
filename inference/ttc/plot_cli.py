"""`moelab plot`: metrics CSVs -> accuracy-vs-compute figure, or the cross-model figure.

Cheap to import: matplotlib loads inside `run`.
"""

from __future__ import annotations

import argparse
import sys

from core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("metrics", nargs="+", help="metrics CSV(s) written by `moelab aggregate`")
    parser.add_argument("--out", required=True, help="figure to write (.png, .pdf or .svg)")
    parser.add_argument("--x", default="samples", choices=["samples", "tokens", "flops"],
                        help="x axis of the per-model curves")
    parser.add_argument("--strategies", default=None, help="comma-separated strategies to draw (default: all)")
    parser.add_argument("--cross-model", action="store_true",
                        help="accuracy against a model property, one line per (d_model, top_k) family and k")
    parser.add_argument("--x-param", default="total_params", choices=["total_params", "tpp", "density"],
                        help="x axis of the cross-model view")
    parser.add_argument("--strategy", default="majority", help="strategy shown in the cross-model view")
    parser.add_argument("--k", default=None, help="sample budgets in the cross-model view (default: powers of 4)")
    parser.add_argument("--params-csv", default=None,
                        help="parameter counts for models the checkpoint index does not know "
                             "(columns model,total_params,active_params[,tpp,density,d_model,top_k]; a model "
                             "without d_model and top_k is a line of its own)")
    parser.add_argument("--data-out", default=None, metavar="POINTS.csv",
                        help="with --cross-model: also write the plotted points (model,line,x,accuracy,ci_low,"
                             "ci_high)")


def run(args: argparse.Namespace) -> int:
    from checkpoints_index.params import model_params
    from inference.ttc.aggregate import read_metrics
    from inference.ttc.aggregate_cli import parse_int_list
    from inference.ttc.plots import cross_model_points, plot_cross_model, plot_curves, save_figure, write_points

    rows = [row for path in args.metrics for row in read_metrics(path)]
    if not rows:
        raise UserError(f"{', '.join(args.metrics)}: no metrics rows")
    if args.cross_model:
        params = model_params(list(dict.fromkeys(r["model"] for r in rows)), args.params_csv)
        points = cross_model_points(rows, params, args.x_param, args.strategy, parse_int_list(args.k, "--k"))
        fig = plot_cross_model(rows, params, args.x_param, args.strategy, points=points)
        if args.data_out:
            print(f"wrote {write_points(points, args.data_out)}", file=sys.stderr)
    else:
        if args.data_out:
            raise UserError("--data-out writes the cross-model view's points: add --cross-model")
        strategies = [s.strip() for s in args.strategies.split(",")] if args.strategies else None
        fig = plot_curves(rows, args.x, strategies)
    print(f"wrote {save_figure(fig, args.out)}", file=sys.stderr)
    return 0
