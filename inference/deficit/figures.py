"""The six figures of `moelab deficit`, drawn from the analysis' rows (`inference.deficit.analysis.Analysis`) only.

    a  accuracy vs task loss, reasoning and memorization side by side
    b  reasoning task loss vs memorization task loss (the study's U shows here)
    c  accuracy vs TPP (log axis), a reference line at TPP = 20
    d  TTC: accuracy vs reasoning task loss, one line per sample budget 2^r (the paper's Fig. 6 left)
    e  GRPO: accuracy vs reasoning task loss before and after (Fig. 6 right)
    f  iso-active-compute: accuracy vs density at fixed d_model (top-k fixed along a line: same active compute)

Every family view (a, b, c, f) draws one line per (d_model, top_k) family (`checkpoints_index.params.family_of`,
the same lines as `moelab plot --cross-model`) with points coloured by density. A panel whose
measures are missing says which, instead of being left out, so the set of six files is always the same.
An axis is a `Measure` (a row of the analysis) or a model's index column (`tpp`, `density`).
"""

from __future__ import annotations

import math
from pathlib import Path

from checkpoints_index.params import family_label, family_of
from inference.deficit.measures import GREEDY, Measure, sampled_budget
from inference.ttc.plots import pyplot, save_figure

FIGURES = {"a": "accuracy_vs_taskloss", "b": "reasoning_vs_memorization_loss", "c": "accuracy_vs_tpp",
           "d": "ttc_accuracy_vs_taskloss", "e": "grpo_accuracy_vs_taskloss", "f": "accuracy_vs_density"}
LABELS = {Measure.loss("reasoning"): "reasoning task loss (bits/token)",
          Measure.loss("memorization"): "memorization task loss (bits/token)",
          Measure.accuracy("reasoning"): "reasoning accuracy", Measure.accuracy("memorization"): "memorization accuracy",
          "tpp": "training tokens per parameter (TPP)", "density": "expert density (top-k / experts)"}


def _label(axis: Measure | str) -> str:
    return LABELS.get(axis) or (axis.name if isinstance(axis, Measure) else axis)


def _value(analysis, model: str, axis: Measure | str) -> tuple[float, float, float] | None:
    """(value, CI low, CI high) of a measure of `model`, or its index column `axis` (no CI); None if missing."""
    if not isinstance(axis, Measure):
        x = analysis.params[model][axis]
        return (x, math.nan, math.nan) if math.isfinite(x) else None
    row = analysis.row(model, axis)
    if row is None or not math.isfinite(row.value):
        return None
    return row.value, row.ci_low, row.ci_high


def _points(analysis, x: Measure | str, y: Measure | str) -> list[dict]:
    out = []
    for m in analysis.models:
        vx, vy = _value(analysis, m, x), _value(analysis, m, y)
        if vx and vy:
            out.append({"model": m, "family": family_of(analysis.params[m]), "x": vx[0], "y": vy[0], "low": vy[1],
                        "high": vy[2], "density": analysis.params[m]["density"]})
    return out


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, transform=ax.transAxes, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def _families(ax, points: list[dict], x: Measure | str, y: Measure | str, plt, norm) -> bool:
    """One line per family (tab10 colours), points coloured by density; False when there is nothing to draw."""
    if not points:
        _empty(ax, f"no data:\n{_label(y)}\nvs {_label(x)}")
        return False
    keys = sorted({p["family"] or (math.inf, p["model"]) for p in points}, key=str)
    for i, key in enumerate(keys):
        mine = sorted((p for p in points if (p["family"] or (math.inf, p["model"])) == key), key=lambda p: p["x"])
        color = plt.get_cmap("tab10")(i % 10)
        label = family_label(mine[0]["family"], mine[0]["model"])
        ax.plot([p["x"] for p in mine], [p["y"] for p in mine], "-", color=color, label=label, zorder=1)
        for p in mine:
            if math.isfinite(p["low"]) and math.isfinite(p["high"]):
                ax.plot([p["x"], p["x"]], [p["low"], p["high"]], color=color, alpha=0.5, lw=1, zorder=1)
        ax.scatter([p["x"] for p in mine], [p["y"] for p in mine], c=[p["density"] for p in mine], cmap="viridis",
                   norm=norm, edgecolors=[color], linewidths=1.2, s=42, zorder=2)
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return True


def _log_axis(ax, base: float = 10) -> None:
    """A log x axis labelled with plain numbers (1.6, 3, 20), no overlapping minor labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log", base=base)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
                                 if base == 10 else NullFormatter())


def _norm(analysis, plt):
    from matplotlib.colors import LogNorm

    densities = [analysis.params[m]["density"] for m in analysis.models if math.isfinite(analysis.params[m]["density"])]
    low, high = (min(densities), max(densities)) if densities else (0.1, 1.0)
    return LogNorm(vmin=low, vmax=high if high > low else low * 2)


def _colorbar(fig, axes, norm, plt) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.ticker import FuncFormatter

    bar = fig.colorbar(ScalarMappable(norm=norm, cmap="viridis"), ax=axes, label=LABELS["density"], shrink=0.85)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def figure_a(analysis):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    norm = _norm(analysis, plt)
    for ax, name in zip(axes, ("reasoning", "memorization")):
        x, y = Measure.loss(name), Measure.accuracy(name)
        _families(ax, _points(analysis, x, y), x, y, plt, norm)
        ax.set_title(f"{name}: accuracy vs task loss")
    _colorbar(fig, axes, norm, plt)
    return fig


def figure_b(analysis):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    norm = _norm(analysis, plt)
    x, y = Measure.loss("memorization"), Measure.loss("reasoning")
    _families(ax, _points(analysis, x, y), x, y, plt, norm)
    ax.set_title("reasoning vs memorization task loss")
    _colorbar(fig, [ax], norm, plt)
    return fig


def figure_c(analysis, reference: float = 20.0):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    norm = _norm(analysis, plt)
    for ax, name in zip(axes, ("reasoning", "memorization")):
        y = Measure.accuracy(name)
        if _families(ax, _points(analysis, "tpp", y), "tpp", y, plt, norm):
            _log_axis(ax)
            ax.axvline(reference, color="0.4", ls=":", lw=1)
            ax.text(reference, ax.get_ylim()[1], f" TPP={reference:g}", va="top", fontsize=7, color="0.3")
        ax.set_title(f"{name} accuracy vs TPP")
    _colorbar(fig, axes, norm, plt)
    return fig


def figure_d(analysis):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    cmap = plt.get_cmap("viridis")
    drawn = 0
    for i, k in enumerate(analysis.budgets):
        accuracy = Measure.sweep("before", *sampled_budget(analysis.strategy, k))
        points = sorted(_points(analysis, Measure.loss("reasoning"), accuracy), key=lambda p: p["x"])
        if not points:
            continue
        color = cmap(i / max(1, len(analysis.budgets) - 1))
        ax.plot([p["x"] for p in points], [p["y"] for p in points], "-o", ms=4, color=color, label=accuracy.budget)
        drawn += 1
    if not drawn:
        _empty(ax, "no data: needs reasoning task loss (taskloss.csv) and a sweep (metrics.csv)")
    else:
        ax.set_xlabel(_label(Measure.loss("reasoning")))
        ax.set_ylabel("sweep accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="sample budget", title_fontsize=7)
    ax.set_title("test-time compute: accuracy vs task loss per budget")
    return fig


def figure_e(analysis):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    both_greedy = any(_value(analysis, m, Measure.sweep("before", GREEDY))
                      and _value(analysis, m, Measure.sweep("after", GREEDY)) for m in analysis.models)
    strategy = GREEDY if both_greedy else "pass"
    drawn = 0
    for phase, style in (("before", "-o"), ("after", "--s")):
        accuracy = Measure.sweep(phase, strategy)
        points = sorted(_points(analysis, Measure.loss("reasoning"), accuracy), key=lambda p: p["x"])
        if points:
            ax.plot([p["x"] for p in points], [p["y"] for p in points], style,
                    label=f"{phase} GRPO ({accuracy.budget})")
            drawn += 1
    if not drawn:
        _empty(ax, "no data: needs reasoning task loss (taskloss.csv) and sweeps before/after GRPO")
    else:
        ax.set_xlabel(_label(Measure.loss("reasoning")) + " (base model)")
        ax.set_ylabel("sweep accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax.set_title("GRPO: accuracy vs task loss, before and after")
    return fig


def figure_f(analysis):
    plt = pyplot()
    ds = sorted({f[0] for f in (family_of(analysis.params[m]) for m in analysis.models) if f})
    fig, axes = plt.subplots(1, max(1, len(ds)), figsize=(5.2 * max(1, len(ds)), 4.2), squeeze=False)
    norm = _norm(analysis, plt)
    if not ds:
        _empty(axes[0, 0], "no model with a known d_model and top_k")
    for ax, d in zip(axes[0], ds):
        y = Measure.accuracy("reasoning")
        points = [p for p in _points(analysis, "density", y) if p["family"] and p["family"][0] == d]
        if _families(ax, points, "density", y, plt, norm):
            _log_axis(ax, 2)
        ax.set_title(f"d_model={d}: fixed top-k = fixed active compute")
    _colorbar(fig, list(axes[0]), norm, plt)
    return fig


def write_figures(analysis, out_dir: Path, tpp_reference: float = 20.0) -> dict[str, Path]:
    """The six figures as `<out_dir>/<letter>_<name>.png`; returns letter -> path."""
    makers = {"a": figure_a, "b": figure_b, "c": lambda an: figure_c(an, tpp_reference), "d": figure_d,
              "e": figure_e, "f": figure_f}
    return {letter: save_figure(makers[letter](analysis), Path(out_dir) / f"{letter}_{FIGURES[letter]}.png")
            for letter in FIGURES}
