"""The sweep's plot stage: metrics.csv -> plots/*.png (`inference.ttc.plots` draws each figure).

Per (dataset, sampled setting): accuracy vs samples and vs tokens (a panel per model, CI bands), and with
several indexed models the cross-model view (accuracy vs total parameters, a line per k). One task per
figure, so that the sweep's helper processes (`inference.sweep.helpers`) draw them side by side; its own
module so that they import it, and nothing else of the sweep, while the engine works.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

from core.errors import UserError

KINDS = ("samples", "tokens", "cross-model")


def figure_tasks(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(dataset, setting, kind) of every figure the metrics call for, in the order they are drawn."""
    tasks = []
    for dataset, setting in sorted({(r["dataset"], r["setting"]) for r in rows}):
        if setting == "greedy":
            continue  # one point per model: it is in the CSV, a curve needs k > 1
        models = {r["model"] for r in rows if r["dataset"] == dataset and r["setting"] == setting}
        tasks += [(dataset, setting, kind) for kind in KINDS if kind != "cross-model" or len(models) > 1]
    return tasks


def draw_figure(metrics_path: Path, plots_dir: Path, task: tuple[str, str, str]) -> Path | None:
    """One figure, written to plots_dir; None when it cannot be drawn (warned: e.g. a cross-model view of
    local directories the index cannot size)."""
    import warnings

    from inference.ttc.aggregate import read_metrics
    from inference.ttc.plots import plot_cross_model, plot_curves, pyplot, save_figure

    dataset, setting, kind = task
    mine = [r for r in read_metrics(metrics_path) if r["dataset"] == dataset and r["setting"] == setting]
    if kind == "cross-model":
        from checkpoints_index.params import model_params

        try:
            figure = plot_cross_model(mine, model_params(list(dict.fromkeys(r["model"] for r in mine))),
                                      "total_params", strategy="majority")
        except UserError as err:
            warnings.warn(f"cross-model plot skipped: {err}")
            return None
    else:
        figure = plot_curves(mine, x=kind)
    path = plots_dir / f"{Path(dataset).stem}-{setting}-{kind}.png"
    save_figure(figure, path)
    pyplot().close(figure)
    return path


def draw_plots(metrics_path: Path, plots_dir: Path,
               map_figures: Callable[[Callable, Iterable], Iterator] = map) -> Path:
    """Every figure of `figure_tasks`, through `map_figures` (the helpers' map draws them in parallel)."""
    from inference.ttc.aggregate import read_metrics

    tasks = figure_tasks(read_metrics(metrics_path))
    list(map_figures(partial(draw_figure, metrics_path, plots_dir), tasks))
    return plots_dir
