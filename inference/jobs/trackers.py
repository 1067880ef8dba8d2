"""Send a metrics table (a sweep's or an eval's `metrics.csv`) to the experiment trackers a recipe names.

GRPO runs reach their trackers through TRL (`grpo.report_to`); sweeps and `moelab eval` have no
trainer, so they call this once, after aggregating:

    from inference.jobs.trackers import log_metrics_table
    log_metrics_table(out_dir / "metrics.csv", ["tensorboard", "wandb"], run_name="toy-sweep",
                      project="moelab", logging_dir=out_dir / "runs", config=OmegaConf.to_container(cfg))

Each row becomes one scalar per curve, with k as the step: tag `<model>/<dataset>/<setting>/<strategy>`
(the columns present among those), so a tracker's line chart is accuracy against the number of
samples, the lab's main plot. The whole table is logged too (tensorboard: markdown text; wandb: a
`wandb.Table`; trackio: a `trackio.Table` where the installed trackio has one). Tracker names are
TRL's (`report_to`); a missing package is one `UserError` naming the install.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

from core.errors import UserError

TRACKERS = ("tensorboard", "wandb", "trackio")
CURVE_COLUMNS = ("model", "dataset", "setting", "strategy")
INSTALL = {"tensorboard": "pip install -e '.[trackers]'", "wandb": "pip install -e '.[trackers]'",
           "trackio": "pip install trackio"}


def read_rows(metrics: str | Path | Iterable[dict]) -> list[dict]:
    if isinstance(metrics, (str, Path)):
        with Path(metrics).open() as f:
            return list(csv.DictReader(f))
    return [dict(r) for r in metrics]


def curve_points(rows: list[dict], value: str = "accuracy") -> list[tuple[str, int, float]]:
    """(tag, k, value) for every row that has a k and a numeric value."""
    points = []
    for row in rows:
        try:
            k, number = int(float(row["k"])), float(row[value])
        except (KeyError, TypeError, ValueError):
            continue
        tag = "/".join(str(row[c]) for c in CURVE_COLUMNS if row.get(c) not in (None, ""))
        points.append((f"{tag}/{value}", k, number))
    return points


def markdown(rows: list[dict]) -> str:
    columns = list(rows[0]) if rows else []
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                     + ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows])


def _import(tracker: str) -> Any:
    import importlib

    module = {"tensorboard": "torch.utils.tensorboard"}.get(tracker, tracker)
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"report_to: {tracker} is not installed ({INSTALL[tracker]})") from None


def log_metrics_table(metrics: str | Path | Iterable[dict], report_to: Iterable[str], *, run_name: str,
                      project: str = "moelab", logging_dir: str | Path = "runs",
                      config: dict | None = None) -> list[str]:
    """Log `metrics` (a metrics.csv path or its rows) to every tracker in `report_to`; returns their names.

    `logging_dir` is where tensorboard writes (one subdirectory per run_name); wandb and trackio
    use `project` and `run_name`. `config` (the resolved recipe) is stored with the run."""
    trackers = [t for t in report_to if t not in ("none", "")]
    unknown = sorted(set(trackers) - set(TRACKERS))
    if unknown:
        raise UserError(f"report_to: unknown tracker(s) {', '.join(unknown)} (known: {', '.join(TRACKERS)})")
    rows = read_rows(metrics)
    points = curve_points(rows)
    for tracker in trackers:
        module = _import(tracker)
        if tracker == "tensorboard":
            writer = module.SummaryWriter(log_dir=str(Path(logging_dir) / run_name))
            for tag, k, value in points:
                writer.add_scalar(tag, value, k)
            writer.add_text("metrics", markdown(rows))
            writer.close()
        elif tracker == "wandb":
            run = module.init(project=project, name=run_name, config=config or {}, reinit="finish_previous")
            for tag, k, value in points:
                run.log({tag: value, "k": k})
            if rows:
                run.log({"metrics": module.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])})
            run.finish()
        else:  # trackio: wandb's API
            module.init(project=project, name=run_name, config=config or {})
            for tag, k, value in points:
                module.log({tag: value}, step=k)
            if rows and hasattr(module, "Table"):
                module.log({"metrics": module.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])})
            module.finish()
    return trackers
