"""The sweep's plot stage: metrics.csv -> plots/*.png (`inference.ttc.plots` draws each figure).

Its own module so that the sweep's helper processes (`inference.sweep.helpers`) can import it, and
nothing else of the sweep, while the engine works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import UserError


def draw_plots(metrics_path: Path, plots_dir: Path) -> Path:
    """Per (dataset, sampled setting): accuracy vs samples and vs tokens (a panel per model, CI bands), and
    with several indexed models the cross-model view (accuracy vs total parameters, a line per k)."""
    import warnings

    import matplotlib.pyplot as plt

    from checkpoints_index.params import model_params
    from inference.ttc.aggregate import read_metrics
    from inference.ttc.plots import plot_cross_model, plot_curves, save_figure

    def save(figure: Any, path: Path) -> None:
        save_figure(figure, path)
        plt.close(figure)

    rows = read_metrics(metrics_path)
    for dataset, setting in sorted({(r["dataset"], r["setting"]) for r in rows}):
        if setting == "greedy":
            continue  # one point per model: it is in the CSV, a curve needs k > 1
        mine = [r for r in rows if r["dataset"] == dataset and r["setting"] == setting]
        stem = f"{Path(dataset).stem}-{setting}"
        save(plot_curves(mine, x="samples"), plots_dir / f"{stem}-samples.png")
        save(plot_curves(mine, x="tokens"), plots_dir / f"{stem}-tokens.png")
        models = list(dict.fromkeys(r["model"] for r in mine))
        if len(models) > 1:
            try:
                figure = plot_cross_model(mine, model_params(models), "total_params", strategy="majority")
            except UserError as err:  # e.g. local directories the index cannot size
                warnings.warn(f"cross-model plot skipped: {err}")
            else:
                save(figure, plots_dir / f"{stem}-cross-model.png")
    return plots_dir
