"""A model's parameter row (total/active parameters, TPP, density, top-k, d_model, experts) and its family.

The analysis (sweeps' cross-model figure, `moelab plot`, `moelab deficit`, the demo report) needs the
same few numbers per model: from the checkpoint index for the models it knows, from a user's CSV for
any other (a model the index does not know is still plottable). A family is a (d_model, top_k) pair:
its members differ only in the number of experts, the study's sparsity axis.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from checkpoints_index.index import resolve
from core.errors import UserError

PARAM_KEYS = ("total_params", "active_params", "tpp", "density", "top_k", "d_model", "num_experts")


def family_of(params: dict) -> tuple[int, int] | None:
    """(d_model, top_k) of a model's parameter row: the models one cross-model line joins; None if unknown."""
    d, k = params.get("d_model", math.nan), params.get("top_k", math.nan)
    if not (isinstance(d, (int, float)) and isinstance(k, (int, float)) and math.isfinite(d) and math.isfinite(k)):
        return None
    return int(d), int(k)


def family_label(family: tuple[int, int] | None, model: str = "") -> str:
    """`d512 top-2`; a model whose family is unknown is a family of its own, named after it."""
    return model if family is None else f"d{family[0]} top-{family[1]}"


def model_params(models: list[str], params_csv: str | Path | None = None) -> dict[str, dict]:
    """{model: {total_params, active_params, tpp, density, top_k, d_model, num_experts}} from `params_csv`
    (columns model, total_params, active_params[, tpp, density, top_k, d_model, num_experts]) first, then
    the checkpoint index. A CSV row without d_model and top_k is a cross-model line of its own."""
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
                                           for key in PARAM_KEYS}
                except ValueError as err:
                    raise UserError(f"{path}: model {row['model']!r}: {err}") from None
    out = {}
    for model in models:
        if model in table:
            out[model] = table[model]
            continue
        try:
            info = resolve(model)
        except UserError:
            raise UserError(f"model {model!r} is not in the checkpoint index; give its parameter counts with "
                            f"--params-csv (columns model,total_params,active_params[,tpp,density])") from None
        out[model] = {key: float(getattr(info, key)) for key in PARAM_KEYS}
    return out
