"""Plots of metrics CSVs: accuracy against samples / tokens / FLOPs, and the study's cross-model view.

Two figures, both from the tidy rows `inference.aggregate` writes (never from samples, so a plot
can be redrawn without recomputing anything):
- `plot_curves`: one panel per model, one line per strategy with its bootstrap CI as a band;
  x is k on a log2 axis, or the compute axes (mean generated tokens, FLOPs) on a log axis.
- `plot_cross_model`: accuracy against total parameters (or TPP, or density), one line per
  (active-parameter group, sample budget k), as the study's figure puts GSM8K accuracy against
  model size with one line per budget. Parameter counts come from the checkpoint index, or from a
  CSV for models it does not know.
Both take `style_by`, a column whose values share the axes told apart by line style, so two runs
of the same models (the demo's before and after GRPO) are compared on one figure; `moelab sweep`,
`moelab plot` and the demo report all draw with these two functions.
matplotlib runs on the Agg backend: no display needed.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from core.errors import UserError
from inference.estimators import STRATEGY_LABELS

X_COLUMNS = {"samples": ("k", "samples per problem (k)"), "tokens": ("mean_tokens", "generated tokens per problem"),
             "flops": ("flops", "generation FLOPs per problem (2 x active params x tokens)")}
PARAM_LABELS = {"total_params": "total parameters", "tpp": "training tokens per parameter (TPP)",
                "density": "expert density (top-k / experts)"}
STRATEGY_COLORS = {"pass": "tab:green", "majority": "tab:blue", "best_of_n": "tab:orange",
                   "weighted_majority": "tab:purple"}
LINE_STYLES = ["-", "--", ":", "-."]
GROUP_LABELS = {"active_params": lambda value: f"{_human(value)} active", "top_k": lambda value: f"top-{value:g}"}


def _pyplot():
    import matplotlib

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
    plt = _pyplot()
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


def model_params(models: list[str], params_csv: str | Path | None = None) -> dict[str, dict]:
    """{model: {total_params, active_params, tpp, density, top_k}} from `params_csv` (columns model,
    total_params, active_params[, tpp, density, top_k]) first, then the checkpoint index."""
    table: dict[str, dict] = {}
    if params_csv:
        path = Path(params_csv)
        if not path.is_file():
            raise UserError(f"{path}: no such parameters CSV")
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = {"model", "total_params", "active_params"} - set(reader.fieldnames or [])
            if missing:
                raise UserError(f"{path}: parameters CSV needs column(s) {', '.join(sorted(missing))}")
            for row in reader:
                try:
                    table[row["model"]] = {key: float(row[key]) if row.get(key) not in (None, "") else math.nan
                                           for key in ("total_params", "active_params", "tpp", "density",
                                                       "top_k")}
                except ValueError as err:
                    raise UserError(f"{path}: model {row['model']!r}: {err}") from None
    out = {}
    for model in models:
        if model in table:
            out[model] = table[model]
            continue
        try:
            from checkpoints_index.index import resolve

            info = resolve(model)
        except (UserError, ImportError):
            raise UserError(f"model {model!r} is not in the checkpoint index; give its parameter counts with "
                            f"--params-csv (columns model,total_params,active_params[,tpp,density])") from None
        out[model] = {"total_params": float(info.total_params), "active_params": float(info.active_params),
                      "tpp": float(info.tpp), "density": float(info.density), "top_k": float(info.top_k)}
    return out


def plot_cross_model(rows: list[dict], params: dict[str, dict], x_param: str = "total_params",
                     strategy: str = "majority", ks: list[int] | None = None, *, group_by: str = "active_params",
                     style_by: str | None = None):
    """Accuracy vs a model property, one line per (group, k, `style_by` value). Models with the same
    `params[model][group_by]` form a group: equal active parameters, or (`top_k`) equal top-k, for a
    family whose router size makes active parameters differ slightly. Returns the Figure."""
    if x_param not in PARAM_LABELS:
        raise UserError(f"--x-param must be one of {', '.join(PARAM_LABELS)}, got {x_param!r}")
    if group_by not in GROUP_LABELS:
        raise UserError(f"group_by must be one of {', '.join(GROUP_LABELS)}, got {group_by!r}")
    mine = [r for r in rows if r["strategy"] == strategy]
    if not mine:
        raise UserError(f"no rows for strategy {strategy!r} in the metrics")
    available = sorted({r["k"] for r in mine})
    ks = [k for k in (ks or [k for k in available if math.log(k, 4).is_integer()]) if k in available] or available
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    cmap = plt.get_cmap("viridis")
    groups = sorted({params[r["model"]][group_by] for r in mine})
    variants = _variants(mine, style_by)
    markers = ["o", "s", "^", "D", "v", "P"]
    for g_index, group in enumerate(groups):
        for k_index, k in enumerate(ks):
            for v_index, variant in enumerate(variants):
                points = sorted(((params[r["model"]][x_param], r) for r in mine
                                 if r["k"] == k and params[r["model"]][group_by] == group
                                 and _picks(r, style_by, variant)), key=lambda p: p[0])
                if not points:
                    continue
                if not all(math.isfinite(p[0]) for p in points):
                    raise UserError(f"{x_param} unknown for some models; add it to --params-csv")
                color = cmap(k_index / max(1, len(ks) - 1))
                xs = [p[0] for p in points]
                style = LINE_STYLES[(g_index if style_by is None else v_index) % len(LINE_STYLES)]
                label = f"{GROUP_LABELS[group_by](group)}, k={k}" + ("" if style_by is None else f", {variant}")
                ax.plot(xs, [p[1]["accuracy"] for p in points], linestyle=style, marker=markers[g_index % len(markers)],
                        color=color, label=label)
                low, high = [p[1]["ci_low"] for p in points], [p[1]["ci_high"] for p in points]
                if len(points) > 1 and all(math.isfinite(v) for v in low + high):
                    ax.fill_between(xs, low, high, color=color, alpha=0.12, linewidth=0)
    ax.set_xscale("log", base=2 if x_param == "density" else 10)
    ax.set_xlabel(PARAM_LABELS[x_param])
    ax.set_ylabel(f"accuracy ({STRATEGY_LABELS.get(strategy, strategy)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(groups) * len(ks) * len(variants) > 8 else 1)
    fig.tight_layout()
    return fig


def _human(count: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return f"{count:.3g}"


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UserError(f"{path}: figure must end in .png, .pdf or .svg")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    _pyplot().close(fig)
    return path
