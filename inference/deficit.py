"""The reasoning-deficit analysis: every instrument's output joined per model, the gap tests, deficit.csv.

Reads only files earlier stages wrote (data flows one way: nothing here writes back), each with a fixed schema:
- `results.csv` of `moelab eval` (issue #14): model,task,metric,filter,value,stderr,num_fewshot,
  num_examples,backend + index columns;
- `taskloss.csv` of `moelab taskloss`: model,task,num_examples,bits_per_token,bits_per_byte,nll_nats,
  answer_tokens,answer_bytes (+ token-weighted bits/token);
- a sweep run directory (`moelab sweep`): `metrics.csv` (accuracy at every k with CIs) and
  `scored.parquet` (one row per sample: the per-problem values the paired tests need), before GRPO
  and, when given, after.

Measures (one `deficit.csv` row per model and measure, with the index columns): reasoning and
memorization accuracy (lm-eval; without results.csv the reasoning accuracy falls back to the
sweep's greedy pass@1 and says so in `source`), their task losses, the sweep's accuracy at every
budget before and after GRPO, and the paired before -> after change. Then the gap tests
(`inference.gaps`) for each pair of models: within a (d_model, top_k) family the most accurate vs
the sparsest member, and across top-k at matched reasoning task loss; and the TPP peak location of
each family with >= 3 members. Their rows carry the pair as `model` ("a vs b") and the verdict.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.files import atomic_write_csv
from inference.gaps import gap_test, peak_location

INDEX_COLUMNS = ["d_model", "num_experts", "top_k", "total_params", "active_params", "tpp", "density"]
DEFICIT_COLUMNS = ["model", "measure", "value", "ci_low", "ci_high", "num_problems", "source", "verdict", "detail",
                   *INDEX_COLUMNS]
RESULTS_REQUIRED = ["model", "task", "metric", "filter", "value", "stderr"]
TASKLOSS_REQUIRED = ["model", "task", "num_examples", "bits_per_token"]


@dataclass
class Instruments:
    """What the analysis reads. Any of it may be missing; the analysis then says what it could not do."""

    models: list[str]
    results_csv: Path | None = None
    taskloss_csv: Path | None = None
    before_dir: Path | None = None
    after_dir: Path | None = None
    trained: dict[str, str] = field(default_factory=dict)  # base model -> GRPO'd model (its name in after_dir)


def read_table(path: Path | None, required: list[str], what: str) -> list[dict]:
    """A CSV as rows (empty when `path` is None); a missing file or column is one UserError naming it."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: not a {what}, missing column(s) {', '.join(missing)}")
        return list(reader)


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def eval_value(rows: list[dict], model: str, task: str | None, metric: str, filt: str) -> tuple[float, float] | None:
    """(value, stderr) of one lm-eval result; None when results.csv has no such row."""
    for r in rows:
        if task and r["model"] == model and r["task"] == task and r["metric"] == metric and r["filter"] == filt:
            return _number(r["value"]), _number(r["stderr"])
    return None


def loss_value(rows: list[dict], model: str, task: str | None, column: str) -> float | None:
    for r in rows:
        if task and r["model"] == model and r["task"] == task:
            if column not in r:
                raise UserError(f"taskloss.csv has no column {column!r} (analysis.loss_column)")
            return _number(r[column])
    return None


# ------------------------------------------------------------------------------------- the sweeps' numbers

def sweep_metrics(run_dir: Path | None) -> list[dict]:
    if run_dir is None:
        return []
    from inference.aggregate import read_metrics

    return read_metrics(Path(run_dir) / "metrics.csv")


def sampled_setting(rows: list[dict]) -> str | None:
    """The sweep's sampled setting (`T0.8`); the first when there are several."""
    settings = sorted({r.get("setting", "") for r in rows} - {"greedy", ""})
    return settings[0] if settings else (None if not rows else "")


def per_problem(run_dir: Path | None, models: list[str], setting: str | None, strategy: str,
                ks: list[int]) -> dict[str, dict[int, dict[str, float]]]:
    """{model: {k: {problem id: expected accuracy}}} from a sweep's scored.parquet (one dataset: the first)."""
    if run_dir is None or setting is None:
        return {}
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from inference.aggregate import estimate_per_problem

    path = Path(run_dir) / "scored.parquet"
    if not path.is_file():
        raise UserError(f"{path}: no scored samples; run the sweep's score stage")
    table = pq.read_table(path)
    if "setting" in table.column_names and setting:
        table = table.filter(pc.equal(table.column("setting"), setting))
    if "dataset" in table.column_names and len(table):
        table = table.filter(pc.equal(table.column("dataset"), sorted(set(table.column("dataset").to_pylist()))[0]))
    table = table.filter(pc.is_in(table.column("model"), value_set=pa.array(models, pa.string())))
    if not len(table):
        return {}
    out = {}
    for est in estimate_per_problem(table, ks, ["pass", strategy] if strategy != "pass" else ["pass"]):
        values = {}
        for k in est.ks:
            column = est.ks.index(k)
            source = est.values["pass"] if k == 1 else est.values[strategy]  # at k=1 every strategy is pass@1
            values[k] = dict(zip(est.problem_ids, source[:, column].tolist()))
        out[est.model] = values
    return out


# ------------------------------------------------------------------------------------------- the analysis

@dataclass
class Analysis:
    """Everything the figures and the report read, computed once."""

    models: list[str]
    params: dict[str, dict]
    rows: list[dict]  # deficit.csv rows
    notes: list[str]
    budgets: list[int]
    n_max: int | None
    strategy: str


def _measure(model: str, measure: str, value: float, params: dict, *, low: float = math.nan, high: float = math.nan,
             n: Any = "", source: str = "", verdict: str = "", detail: str = "") -> dict:
    return {"model": model, "measure": measure, "value": value, "ci_low": low, "ci_high": high, "num_problems": n,
            "source": source, "verdict": verdict, "detail": detail, **{c: params.get(c, "") for c in INDEX_COLUMNS}}


def analyse(inputs: Instruments, cfg: Any) -> Analysis:
    """Measures, gap tests and peaks for `inputs` under the recipe's `reasoning`, `memorization`, `analysis`."""
    from core.stats import bootstrap_ci
    from inference.gaps import aligned
    from inference.plots import model_params

    a = cfg.analysis
    models = list(inputs.models)
    params = model_params(models)
    results = read_table(inputs.results_csv, RESULTS_REQUIRED, "results.csv (moelab eval)")
    losses = read_table(inputs.taskloss_csv, TASKLOSS_REQUIRED, "taskloss.csv (moelab taskloss)")
    before = sweep_metrics(inputs.before_dir)
    after = sweep_metrics(inputs.after_dir)
    setting = sampled_setting(before)
    n_max = max((r["k"] for r in before if r.get("setting") == setting), default=None)
    budgets = [k for k in (a.budgets or [2 ** i for i in range(12)]) if n_max and k <= n_max]
    rows, notes = [], []

    # ---- instruments: accuracy and task loss per model
    for m in models:
        p = params[m]
        for name, task in (("reasoning", cfg.reasoning), ("memorization", cfg.memorization)):
            found = eval_value(results, m, task.eval_task, task.eval_metric, task.eval_filter)
            if found:
                value, stderr = found
                half = 1.96 * stderr if math.isfinite(stderr) else math.nan
                rows.append(_measure(m, f"{name}_accuracy", value, p, low=value - half, high=value + half,
                                     source=f"results.csv {task.eval_task} {task.eval_metric} {task.eval_filter} "
                                            f"(CI: +-1.96 stderr)"))
            loss = loss_value(losses, m, task.loss_task, a.loss_column)
            if loss is not None:
                rows.append(_measure(m, f"{name}_loss", loss, p, source=f"taskloss.csv {task.loss_task} "
                                                                          f"{a.loss_column}"))
        for label, metrics, name in (("before", before, m), ("after", after, inputs.trained.get(m))):
            for r in metrics:
                if r["model"] != name:
                    continue
                greedy = r.get("setting") == "greedy"
                if greedy and r["strategy"] == "pass" and r["k"] == 1:
                    rows.append(_measure(m, f"{label}_greedy", r["accuracy"], p, low=r["ci_low"], high=r["ci_high"],
                                         n=r["num_problems"], source=f"sweep {label} GRPO, greedy"))
                elif not greedy and r.get("setting", "") == setting and r["strategy"] in ("pass", a.strategy):
                    rows.append(_measure(m, f"{label}_{r['strategy']}@{r['k']}", r["accuracy"], p, low=r["ci_low"],
                                         high=r["ci_high"], n=r["num_problems"], source=f"sweep {label} GRPO, {setting}"))
    have = {(r["model"], r["measure"]) for r in rows}
    for m in models:
        if (m, "reasoning_accuracy") not in have and (m, "before_greedy") in have:
            g = next(r for r in rows if r["model"] == m and r["measure"] == "before_greedy")
            rows.append({**g, "measure": "reasoning_accuracy", "source": "sweep greedy pass@1 (no results.csv row)"})
    if not results:
        notes.append("No lm-eval results (results.csv): reasoning accuracy is the sweep's greedy pass@1; no "
                     "memorization accuracy.")
    if not losses:
        notes.append("No task losses (taskloss.csv): the task-loss figures (a, b, d, e) and the matched-loss pairs "
                     "are empty.")

    # ---- per-problem values: the paired before -> after change, gap tests, peaks
    ks = sorted({1, n_max}) if n_max else []
    pb = per_problem(inputs.before_dir, models, setting, a.strategy, ks)
    trained = {m: inputs.trained[m] for m in models if m in inputs.trained}
    pa = per_problem(inputs.after_dir, list(trained.values()), sampled_setting(after), a.strategy, ks)
    pa = {m: pa[trained[m]] for m in trained if trained[m] in pa}
    gb = per_problem(inputs.before_dir, models, "greedy", "pass", [1]) if before else {}
    ga = per_problem(inputs.after_dir, list(trained.values()), "greedy", "pass", [1]) if after else {}
    ga = {m: ga[trained[m]] for m in trained if trained[m] in ga}
    for m in models:
        changes = [("greedy", gb.get(m, {}).get(1), ga.get(m, {}).get(1))]
        changes += [("pass@1" if k == 1 else f"{a.strategy}@{k}", pb.get(m, {}).get(k), pa.get(m, {}).get(k))
                    for k in ks]
        for name, b_map, a_map in changes:
            if b_map and a_map:  # after - before on the same problems: the paired CI of the change
                _, (b_values, a_values) = aligned(b_map, a_map)
                mean, low, high = bootstrap_ci(a_values - b_values, a.bootstrap, a.seed, a.level)
                rows.append(_measure(m, f"grpo_change_{name}", float(mean[0]), params[m], low=float(low[0]),
                                     high=float(high[0]), n=len(b_values),
                                     source="paired bootstrap over problems (same problems and seeds)"))

    value = {(r["model"], r["measure"]): r["value"] for r in rows}
    pairs = [(x, y, "recipe") for x, y in (tuple(p) for p in a.pairs)] + default_pairs(models, params, value, notes)
    for x, y, why in pairs:
        rows += _gap_rows(x, y, why, pb, pa, ks, a, notes)
    rows += _peak_rows(models, params, pb, pa, a, notes)
    return Analysis(models, params, rows, notes, budgets, n_max, a.strategy)


def families(models: list[str], params: dict[str, dict]) -> dict[tuple[int, int], list[str]]:
    """(d_model, top_k) -> members, sparsest first (lowest density = most experts)."""
    from inference.plots import family_of

    out: dict[tuple[int, int], list[str]] = {}
    for m in models:
        family = family_of(params[m])
        if family is not None:
            out.setdefault(family, []).append(m)
    return {f: sorted(ms, key=lambda m: params[m]["density"]) for f, ms in sorted(out.items())}


def default_pairs(models: list[str], params: dict[str, dict], value: dict, notes: list[str]) -> list[tuple]:
    """Within each family: most accurate vs sparsest; across top-k at one d: the nearest reasoning task losses."""
    pairs = []
    fams = families(models, params)
    for (d, k), members in fams.items():
        scored = [m for m in members if (m, "reasoning_accuracy") in value]
        if len(scored) < 2:
            continue
        best = max(scored, key=lambda m: value[m, "reasoning_accuracy"])
        sparsest = scored[0]
        if best == sparsest:  # no deficit: test whether TTC/GRPO change the sparsest member's lead instead
            pairs.append((sparsest, scored[-1], f"d{d} top-{k}: no deficit, the sparsest member is the most accurate; "
                                                f"its lead over the densest"))
        else:
            pairs.append((best, sparsest, f"d{d} top-{k}: most accurate vs sparsest"))
    for (d, k_low), low in fams.items():
        for (d2, k_high), high in fams.items():
            if d2 != d or k_high <= k_low:
                continue
            candidates = [(abs(value[x, "reasoning_loss"] - value[y, "reasoning_loss"]), x, y) for x in high for y in low
                          if (x, "reasoning_loss") in value and (y, "reasoning_loss") in value]
            if candidates:
                _, x, y = min(candidates)
                pairs.append((x, y, f"d{d}: top-{k_high} vs top-{k_low} at matched reasoning task loss"))
    return pairs


def _gap_rows(x: str, y: str, why: str, pb: dict, pa: dict, ks: list[int], a: Any, notes: list[str]) -> list[dict]:
    """TTC (k=1 -> N, before and after GRPO) and GRPO (before -> after, at k=1 and N) gap tests of x over y."""
    rows = []
    tests = []
    n = max(ks) if ks else None
    strategy = f"{a.strategy}@{n}"
    for label, data in (("before GRPO", pb), ("after GRPO", pa)):
        if x in data and y in data and n and n > 1:
            tests.append((f"gap_ttc pass@1->{strategy} ({label})", data[x][1], data[y][1], data[x][n], data[y][n]))
    for k in ks:
        if all(m in pb and m in pa for m in (x, y)):
            name = "pass@1" if k == 1 else strategy
            tests.append((f"gap_grpo {name} (before->after)", pb[x][k], pb[y][k], pa[x][k], pa[y][k]))
    if not tests:
        notes.append(f"{x} vs {y} ({why}): no per-problem sweep data for both, no gap test.")
    for measure, a1, b1, a2, b2 in tests:
        g = gap_test(a1, b1, a2, b2, resamples=a.bootstrap, seed=a.seed, level=a.level)
        detail = (f"{why}; gap {g['gap_1']:+.4f} [{g['gap_1_low']:+.4f}, {g['gap_1_high']:+.4f}] -> {g['gap_2']:+.4f} "
                  f"[{g['gap_2_low']:+.4f}, {g['gap_2_high']:+.4f}]; {g['reason']}")
        rows.append({"model": f"{x} vs {y}", "measure": measure, "value": g["did"], "ci_low": g["did_low"],
                     "ci_high": g["did_high"], "num_problems": g["num_problems"], "source": "paired bootstrap, "
                     "difference-in-differences", "verdict": g["verdict"], "detail": detail,
                     **{c: "" for c in INDEX_COLUMNS}, "_gap": g, "_pair": (x, y, why)})
    return rows


def _peak_rows(models: list[str], params: dict, pb: dict, pa: dict, a: Any, notes: list[str]) -> list[dict]:
    rows = []
    for (d, k), members in families(models, params).items():
        tpp = {m: params[m]["tpp"] for m in members if math.isfinite(params[m]["tpp"])}
        if len(tpp) < 3:
            continue
        for label, data in (("before GRPO", pb), ("after GRPO", pa)):
            have = [m for m in tpp if m in data and 1 in data[m]]
            if len(have) < 3:
                continue
            peak = peak_location({m: data[m][1] for m in have}, tpp, resamples=a.bootstrap, seed=a.seed,
                                 level=a.level)
            where = "interior" if peak["interior"] else "at the edge of the grid (no interior peak)"
            rows.append({"model": f"d{d} top-{k}", "measure": f"tpp_peak pass@1 ({label})", "value": peak["peak"],
                         "ci_low": peak["peak_low"], "ci_high": peak["peak_high"], "num_problems": peak["num_problems"],
                         "source": "bootstrap of the argmax over problems", "verdict": where,
                         "detail": f"peak at {peak['peak_model']}; {100 * peak['edge_share']:.0f}% of resamples peak "
                                   f"at an edge; grid TPP {', '.join(f'{t:.3g}' for t in peak['grid'])}",
                         **{c: "" for c in INDEX_COLUMNS}, "_peak": peak})
    return rows


def write_deficit_csv(analysis: Analysis, path: Path) -> Path:
    """deficit.csv (DEFICIT_COLUMNS), atomically."""
    rows = ({k: _cell(v) for k, v in row.items()} for row in analysis.rows)
    return atomic_write_csv(path, rows, DEFICIT_COLUMNS, extrasaction="ignore")


def _cell(value: Any) -> Any:
    """Counts as integers, other numbers to 8 significant digits, NaN as an empty cell."""
    if not isinstance(value, float):
        return value
    if not math.isfinite(value):
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.8g}"


def measure(analysis: Analysis, model: str, name: str) -> dict | None:
    return next((r for r in analysis.rows if r["model"] == model and r["measure"] == name), None)
