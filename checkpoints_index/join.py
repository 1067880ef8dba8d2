"""Results joined to the index by model name: one table for the cross-model analysis.

Every job writes the model as the index knows it in a `model` column (`moelab eval`'s results.csv,
`moelab taskloss`'s taskloss.csv, a sweep's metrics.csv). `join_results` reads any number of such
CSV files and appends the index's architecture columns to every row, so "accuracy against total
parameters, TPP or density" is one read. It lives here, below the jobs, because it needs only the
index and the files they wrote (data flows one way: later stages read what earlier ones wrote).

    rows = join_results("outputs/eval/toy/results.csv", "outputs/taskloss/toy/taskloss.csv")
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from checkpoints_index.index import CheckpointInfo, resolve
from core.errors import UserError

INDEX_COLUMNS = ["d_model", "num_experts", "top_k", "total_params", "active_params", "tpp", "density"]


def index_columns(model: str | CheckpointInfo) -> dict[str, Any]:
    """The index's architecture columns of one model (a name, hub id, local directory or its info)."""
    info = resolve(model) if isinstance(model, str) else model
    row = info.as_row()
    return {column: row[column] for column in INDEX_COLUMNS}


def join_results(*paths: str | Path, key: str = "model") -> list[dict[str, Any]]:
    """Rows of every CSV in `paths` (each with a `key` column naming a model), with the index columns
    appended and a `source` column naming the file. Columns a file already has are kept as written; a
    model the index cannot resolve is a `UserError` naming the file and the model."""
    rows: list[dict[str, Any]] = []
    cache: dict[str, dict[str, Any]] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"results file not found: {path}")
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if key not in (reader.fieldnames or []):
                names = ", ".join(reader.fieldnames or [])
                raise UserError(f"{path}: no '{key}' column to join on (columns: {names})")
            for row in reader:
                name = row[key]
                if name not in cache:
                    try:
                        cache[name] = index_columns(name)
                    except UserError as err:
                        raise UserError(f"{path}: model {name!r}: {err}") from None
                rows.append({**cache[name], **row, "source": str(path)})
    return rows


def write_joined(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write joined rows as one CSV (columns: the union, in first-seen order)."""
    from core.files import atomic_write_csv

    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    return atomic_write_csv(path, rows, columns, restval="")
