"""Plots of metrics CSVs: accuracy against samples / tokens / FLOPs, and the study's cross-model view.

Two figures, both from the tidy rows `inference.ttc.aggregate` writes (never from samples, so a plot
can be redrawn without recomputing anything):
- `plot_curves`: one panel per model, one line per strategy with its bootstrap CI as a band;
  x is k on a log2 axis, or the compute axes (mean generated tokens, FLOPs) on a log axis.
- `plot_cross_model`: accuracy against total parameters (or TPP, or density), one line per
  (family, sample budget k), as the study's figure puts GSM8K accuracy against model size with one
  line per budget. A family is a (d_model, top_k) pair (`family_of`): its members differ only in the
  number of experts. Not the exact active-parameter count: the router's D x E term makes it differ
  inside a family (d512-E8-k2 169,165,312 vs d512-E16-k2 169,230,848), which drew one single-point
  "line" per model; not top-k alone, which joined d512-k2 (170M active) and d1024-k2 (470M) on one
  zig-zag. `cross_model_points` returns the plotted points with their line label (what
  `moelab plot --cross-model --data-out` writes). Parameter counts come from the checkpoint index,
  or from a CSV for models it does not know.
Both take `style_by`, a column whose values share the axes told apart by line style, so two runs
of the same models (the demo's before and after GRPO) are compared on one figure; `moelab sweep`,
`moelab plot`, the demo report and `moelab deficit` all draw with these functions.
matplotlib: the backend already chosen (a notebook's, `MPLBACKEND`) is kept; Agg is selected only
when none was chosen and there is no display, so the lab's jobs run headless.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from checkpoints_index.params import family_label, family_of
from core.errors import UserError
from inference.ttc.compute import FLOPS_LABEL
from inference.ttc.estimators import STRATEGY_LABELS

X_COLUMNS = {"samples": ("k", "samples per problem (k)"), "tokens": ("mean_tokens", "generated tokens per problem"),
             "flops": ("flops", FLOPS_LABEL)}
PARAM_LABELS = {"total_params": "total parameters", "tpp": "training tokens per parameter (TPP)",
                "density": "expert density (top-k / experts)"}
STRATEGY_COLORS = {"pass": "tab:green", "majority": "tab:blue", "best_of_n": "tab:orange",
                   "weighted_majority": "tab:purple"}
LINE_STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
POINT_COLUMNS = ["model", "line", "x", "accuracy", "ci_low", "ci_high"]


def pyplot():
    """pyplot on the backend already chosen; Agg only when none was chosen and there is no display."""
    import matplotlib

    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and matplotlib.rcParams._get_backend_or_none() is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _variants(rows: list[dict], style_by: str | None) -> list:
    """The values of `style_by` in order of first appearance ([None] without it): one line style each."""
    if style_by is None:
        return [None]
    if any(style_by not in r for r in rows):
        raise UserError(f"style_by={style_by!r}: not a column of every metrics row")
    return list(dict.fromkeys(r[style_by] for r in rows))


def _picks(row: dict, style_by: str | None, variant) -> bool:
    return style_by is None or row[style_by] == variant


def plot_curves(rows: list[dict], x: str = "samples", strategies: list[str] | None = None, *,
                style_by: str | None = None):
    """One panel per model, accuracy vs x with CI bands per strategy (and per `style_by` value, as line
    styles). Returns the matplotlib Figure."""
    if x not in X_COLUMNS:
        raise UserError(f"--x must be one of {', '.join(X_COLUMNS)}, got {x!r}")
    column, label = X_COLUMNS[x]
    models = list(dict.fromkeys(r["model"] for r in rows))
    if not models:
        raise UserError("no metrics rows to plot")
    variants = _variants(rows, style_by)
    plt = pyplot()
    cols = min(3, len(models))
    nrows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.8 * cols, 3.8 * nrows), squeeze=False, sharey=True)
    for ax, model in zip(axes.flat, models):
        mine = [r for r in rows if r["model"] == model]
        for strategy in list(dict.fromkeys(r["strategy"] for r in mine)):
            if strategies and strategy not in strategies:
                continue
            for v_index, variant in enumerate(variants):
                points = sorted((r for r in mine if r["strategy"] == strategy and _picks(r, style_by, variant)),
                                key=lambda r: r["k"])
                if not points:
                    continue
                xs = [float(r[column]) for r in points]
                if not all(math.isfinite(v) and v > 0 for v in xs):
                    raise UserError(f"model {model!r} has no {column} values: cannot plot against {x} "
                                    f"(tokens need num_tokens in the samples, FLOPs a model the index knows)")
                color = STRATEGY_COLORS.get(strategy)
                name = STRATEGY_LABELS.get(strategy, strategy) + ("" if style_by is None else f", {variant}")
                ax.plot(xs, [r["accuracy"] for r in points], LINE_STYLES[v_index % len(LINE_STYLES)], marker="o",
                        ms=3, color=color, label=name)
                low, high = [r["ci_low"] for r in points], [r["ci_high"] for r in points]
                if all(math.isfinite(v) for v in low + high):
                    ax.fill_between(xs, low, high, color=color, alpha=0.2 / len(variants), linewidth=0)
        ax.set_xscale("log", base=2 if x == "samples" else 10)
        ax.set_title(model)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def cross_model_points(rows: list[dict], params: dict[str, dict], x_param: str = "total_params",
                       strategy: str = "majority", ks: list[int] | None = None, *,
                       style_by: str | None = None) -> list[dict]:
    """The points of the cross-model view: one per (model, budget k, `style_by` value), each with its
    line label (`d512 top-2, k=4[, <style value>]`), x = `params[model][x_param]`, accuracy and CI.
    Budgets default to the powers of 4 present (every k when none is)."""
    if x_param not in PARAM_LABELS:
        raise UserError(f"--x-param must be one of {', '.join(PARAM_LABELS)}, got {x_param!r}")
    mine = [r for r in rows if r["strategy"] == strategy]
    if not mine:
        raise UserError(f"no rows for strategy {strategy!r} in the metrics")
    available = sorted({r["k"] for r in mine})
    ks = [k for k in (ks or [k for k in available if math.log(k, 4).is_integer()]) if k in available] or available
    _variants(mine, style_by)  # a style_by column every row has
    points = []
    for r in mine:
        if r["k"] not in ks:
            continue
        family = family_of(params[r["model"]])
        x = params[r["model"]][x_param]
        if not math.isfinite(x):
            raise UserError(f"{x_param} unknown for model {r['model']!r}; add it to --params-csv")
        line = f"{family_label(family, r['model'])}, k={r['k']}" + ("" if style_by is None else f", {r[style_by]}")
        points.append({"model": r["model"], "line": line, "family": family, "k": r["k"],
                       "variant": None if style_by is None else r[style_by], "x": float(x),
                       "accuracy": r["accuracy"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
    return points


def write_points(points: list[dict], path: str | Path) -> Path:
    """The plotted points as CSV (POINT_COLUMNS: model,line,x,accuracy,ci_low,ci_high), written atomically."""
    from core.files import atomic_write_csv

    return atomic_write_csv(path, points, POINT_COLUMNS, extrasaction="ignore")


def plot_cross_model(rows: list[dict], params: dict[str, dict], x_param: str = "total_params",
                     strategy: str = "majority", ks: list[int] | None = None, *,
                     style_by: str | None = None, points: list[dict] | None = None):
    """Accuracy vs a model property, one line per (d_model, top_k) family, budget k and `style_by` value
    (`cross_model_points`; pass `points` to draw ones already computed). Returns the Figure."""
    points = points if points is not None else cross_model_points(rows, params, x_param, strategy, ks,
                                                                  style_by=style_by)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    cmap = plt.get_cmap("viridis")
    keys = sorted({_family_key(p) for p in points}, key=lambda key: (isinstance(key, str), key))
    family_index = {key: i for i, key in enumerate(keys)}
    budgets = sorted({p["k"] for p in points})
    variants = list(dict.fromkeys(p["variant"] for p in points))
    lines = list(dict.fromkeys(p["line"] for p in sorted(
        points, key=lambda p: (family_index[_family_key(p)], p["k"], variants.index(p["variant"])))))
    for line in lines:
        mine = sorted((p for p in points if p["line"] == line), key=lambda p: p["x"])
        first = mine[0]
        f_index = family_index[_family_key(first)]
        color = cmap(budgets.index(first["k"]) / max(1, len(budgets) - 1))
        style = LINE_STYLES[(f_index if len(variants) == 1 else variants.index(first["variant"])) % len(LINE_STYLES)]
        xs = [p["x"] for p in mine]
        ax.plot(xs, [p["accuracy"] for p in mine], linestyle=style, marker=MARKERS[f_index % len(MARKERS)],
                color=color, label=line)
        low, high = [p["ci_low"] for p in mine], [p["ci_high"] for p in mine]
        if len(mine) > 1 and all(math.isfinite(v) for v in low + high):
            ax.fill_between(xs, low, high, color=color, alpha=0.12, linewidth=0)
    ax.set_xscale("log", base=2 if x_param == "density" else 10)
    ax.set_xlabel(PARAM_LABELS[x_param])
    ax.set_ylabel(f"accuracy ({STRATEGY_LABELS.get(strategy, strategy)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(lines) > 8 else 1)
    fig.tight_layout()
    return fig


def _family_key(point: dict) -> tuple[int, int] | str:
    return point["family"] if point["family"] is not None else point["model"]


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UserError(f"{path}: figure must end in .png, .pdf or .svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    pyplot().close(fig)
    return path
