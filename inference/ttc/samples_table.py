"""Reading the scored samples table (`inference.ttc.aggregate`'s input) from JSONL, parquet, a directory
of shards, a pyarrow Table or a list of dicts, and its columns as numpy arrays; every defect of the input is a
one-line `UserError` naming the file, line or column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa  # annotations only: pyarrow is imported where a table is read


def read_samples(source) -> "pa.Table":
    """A path (JSONL, parquet, directory of shards), a pyarrow Table or a list of dicts -> pyarrow Table."""
    import pyarrow as pa

    if isinstance(source, pa.Table):
        return source
    if isinstance(source, list):
        return pa.Table.from_pylist(_normalize_json_rows(source, "rows"))
    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such samples file or directory")
    if path.is_dir():
        parquet = sorted(path.rglob("*.parquet"))
        if parquet:
            import pyarrow.dataset as ds

            try:
                return ds.dataset([str(p) for p in parquet], format="parquet").to_table()
            except (pa.ArrowInvalid, OSError) as err:
                raise UserError(f"{path}: cannot read the parquet shards: {err}") from None
        shards = sorted(path.rglob("*.jsonl"))
        if not shards:
            raise UserError(f"{path}: directory holds no *.parquet or *.jsonl sample shards")
        return pa.concat_tables([_read_jsonl(p) for p in shards], promote_options="permissive")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{path}: not a readable parquet file: {err}") from None
    return _read_jsonl(path)


def _normalize_json_rows(rows: list[dict], where: str) -> list[dict]:
    """Answers become strings (clusters are keys, `18` and `"18"` are one answer); scores floats."""
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"{where}: row {i + 1} is not a JSON object")
        row = dict(row)
        if row.get("answer") is not None:
            row["answer"] = str(row["answer"])
        for name in ("score", "mean_logprob", "num_tokens"):
            if row.get(name) is not None:
                try:
                    row[name] = float(row[name])
                except (TypeError, ValueError):
                    raise UserError(f"{where}: row {i + 1}: {name!r} is not a number: {row[name]!r}") from None
        if "problem_id" in row and row["problem_id"] is not None:
            row["problem_id"] = str(row["problem_id"])
        out.append(row)
    return out


def _read_jsonl(path: Path) -> "pa.Table":
    """pyarrow's JSON reader when the file is clean and answers are strings (fast); otherwise a
    line-by-line read that stringifies answers and names the line of any bad JSON."""
    import pyarrow as pa
    import pyarrow.json as pajson

    try:
        strings = pa.schema([("answer", pa.string()), ("problem_id", pa.string())])
        table = pajson.read_json(path, parse_options=pajson.ParseOptions(explicit_schema=strings))
        # the explicit schema invents all-null columns for absent keys: let the slow path see the truth
        if len(table) and all(table.column(name).null_count < len(table) for name in strings.names):
            return table
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    rows = []
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{line_no}: bad JSON ({err.msg}); one JSON object per line expected") from None
    if not rows:
        raise UserError(f"{path}: no samples in the file")
    try:
        return pa.Table.from_pylist(_normalize_json_rows(rows, str(path)))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise UserError(f"{path}: inconsistent column types: {err}") from None


def column(table, name: str, kind: str, where: str) -> np.ndarray:
    """One column as numpy: kind 'float' (null -> NaN), 'int', 'bool' (null -> False) or 'code'."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name)
    try:
        if kind == "code":  # dictionary codes in order of first appearance; null -> -1
            encoded = pc.dictionary_encode(pc.cast(col, pa.string())).combine_chunks()
            return np.asarray(pc.fill_null(encoded.indices, -1), dtype=np.int64), encoded.dictionary.to_pylist()
        if kind == "float":
            return np.asarray(pc.fill_null(pc.cast(col, pa.float64()), math.nan), dtype=float)
        if kind == "int":
            if col.null_count:
                raise UserError(f"{where}: column {name!r} has missing values")
            return np.asarray(pc.cast(col, pa.int64()), dtype=np.int64)
        return np.asarray(pc.fill_null(pc.cast(col, pa.bool_()), False), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise UserError(f"{where}: column {name!r} cannot be read as {kind}: {err}") from None
