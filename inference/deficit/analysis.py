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
(`inference.deficit.gaps`) for each pair of models: within a (d_model, top_k) family the most accurate vs
the sparsest member, and across top-k at matched reasoning task loss; and the TPP peak location of
each family with >= 3 members. Their rows carry the pair as `model` ("a vs b") and the verdict.

Each row is a `Row` of a `Measure` (`inference.deficit.measures`: the one spelling of a measure's name).
`analyse` reads the inputs once, then adds the rows step by step in deficit.csv's order: per model the
instruments and the sweeps, the greedy stand-in, the paired changes, the gap tests, the peaks.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.files import atomic_write_csv
from inference.deficit.gaps import gap_test, peak_location
from inference.deficit.measures import DEFICIT_COLUMNS, GREEDY, INDEX_COLUMNS, Measure, Pair, Row, sampled_budget

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
    from inference.ttc.aggregate import read_metrics

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

    from inference.ttc.aggregate import estimate_per_problem

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
    rows: list[Row]  # deficit.csv rows
    notes: list[str]
    budgets: list[int]
    n_max: int | None
    strategy: str

    def row(self, model: str, measure: Measure) -> Row | None:
        """The first row of (model, measure), or None."""
        return next((r for r in self.rows if r.model == model and r.measure == measure), None)


@dataclass
class Sweeps:
    """The sweeps' metrics.csv rows before and after GRPO; `setting`: before's sampled setting (`T0.8`), which
    both phases are read at, `n_max`: its largest budget."""

    before: list[dict]
    after: list[dict]

    @property
    def setting(self) -> str | None:
        return sampled_setting(self.before)

    @property
    def n_max(self) -> int | None:
        setting = self.setting
        return max((r["k"] for r in self.before if r.get("setting") == setting), default=None)


@dataclass
class PerProblem:
    """Per-problem values of one setting before and after GRPO, each {base model: {k: {problem id: accuracy}}}
    (the GRPO'd models' values under their base model's name, so both phases are looked up alike)."""

    before: dict[str, dict[int, dict[str, float]]]
    after: dict[str, dict[int, dict[str, float]]]

    def at(self, model: str, k: int) -> tuple[dict | None, dict | None]:
        return self.before.get(model, {}).get(k), self.after.get(model, {}).get(k)


def analyse(inputs: Instruments, cfg: Any) -> Analysis:
    """Measures, gap tests and peaks for `inputs` under the recipe's `reasoning`, `memorization`, `analysis`."""
    from checkpoints_index.params import model_params

    options = cfg.analysis
    models = list(inputs.models)
    params = model_params(models)
    results = read_table(inputs.results_csv, RESULTS_REQUIRED, "results.csv (moelab eval)")
    losses = read_table(inputs.taskloss_csv, TASKLOSS_REQUIRED, "taskloss.csv (moelab taskloss)")
    sweeps = Sweeps(sweep_metrics(inputs.before_dir), sweep_metrics(inputs.after_dir))
    n_max = sweeps.n_max
    budgets = [k for k in (options.budgets or [2 ** i for i in range(12)]) if n_max and k <= n_max]

    rows: list[Row] = []
    for m in models:
        rows += _instrument_rows(m, params[m], results, losses, cfg)
        rows += _sweep_rows(m, params[m], sweeps, inputs.trained.get(m), options.strategy)
    rows += _greedy_fallback_rows(models, rows)
    notes = _missing_instruments(results, losses)

    ks = sorted({1, n_max}) if n_max else []
    sampled, greedy = _per_problem_phases(inputs, models, sweeps, options.strategy, ks)
    rows += _change_rows(models, params, sampled, greedy, ks, options)
    value = {(r.model, r.measure): r.value for r in rows}
    pairs = [Pair(x, y, "recipe") for x, y in (tuple(p) for p in options.pairs)]
    for pair in pairs + default_pairs(models, params, value, notes):
        rows += _gap_rows(pair, sampled, ks, options, notes)
    rows += _peak_rows(models, params, sampled, options, notes)
    return Analysis(models, params, rows, notes, budgets, n_max, options.strategy)


def _row(model: str, measure: Measure, value: float, params: dict, *, low: float = math.nan, high: float = math.nan,
         n: Any = "", source: str = "") -> Row:
    """A per-model row, with the model's index columns."""
    return Row(model, measure, value, low, high, n, source, index={c: params.get(c, "") for c in INDEX_COLUMNS})


def _instrument_rows(model: str, params: dict, results: list[dict], losses: list[dict], cfg: Any) -> list[Row]:
    """Accuracy (lm-eval, CI +-1.96 stderr) and task loss of the reasoning and the memorization task."""
    rows = []
    column = cfg.analysis.loss_column
    for name, task in (("reasoning", cfg.reasoning), ("memorization", cfg.memorization)):
        found = eval_value(results, model, task.eval_task, task.eval_metric, task.eval_filter)
        if found:
            value, stderr = found
            half = 1.96 * stderr if math.isfinite(stderr) else math.nan
            rows.append(_row(model, Measure.accuracy(name), value, params, low=value - half, high=value + half,
                             source=f"results.csv {task.eval_task} {task.eval_metric} {task.eval_filter} "
                                    f"(CI: +-1.96 stderr)"))
        loss = loss_value(losses, model, task.loss_task, column)
        if loss is not None:
            rows.append(_row(model, Measure.loss(name), loss, params,
                             source=f"taskloss.csv {task.loss_task} {column}"))
    return rows


def _sweep_rows(model: str, params: dict, sweeps: Sweeps, trained: str | None, strategy: str) -> list[Row]:
    """The sweeps' accuracy at every budget (pass and `strategy`, the sampled setting) and greedy, before GRPO and
    after (the GRPO'd model `trained`, under its base model's name)."""
    rows = []
    setting = sweeps.setting
    for phase, metrics, name in (("before", sweeps.before, model), ("after", sweeps.after, trained)):
        for r in metrics:
            if r["model"] != name:
                continue
            greedy = r.get("setting") == GREEDY
            if greedy and r["strategy"] == "pass" and r["k"] == 1:
                which, source = Measure.sweep(phase, GREEDY), f"sweep {phase} GRPO, greedy"
            elif not greedy and r.get("setting", "") == setting and r["strategy"] in ("pass", strategy):
                which, source = Measure.sweep(phase, r["strategy"], r["k"]), f"sweep {phase} GRPO, {setting}"
            else:
                continue
            rows.append(_row(model, which, r["accuracy"], params, low=r["ci_low"], high=r["ci_high"],
                             n=r["num_problems"], source=source))
    return rows


def _greedy_fallback_rows(models: list[str], rows: list[Row]) -> list[Row]:
    """Without an lm-eval reasoning accuracy, the sweep's greedy pass@1 stands in (and says so in `source`)."""
    accuracy, greedy = Measure.accuracy("reasoning"), Measure.sweep("before", GREEDY)
    have = {(r.model, r.measure) for r in rows}
    return [replace(next(r for r in rows if r.model == m and r.measure == greedy), measure=accuracy,
                    source="sweep greedy pass@1 (no results.csv row)")
            for m in models if (m, accuracy) not in have and (m, greedy) in have]


def _missing_instruments(results: list[dict], losses: list[dict]) -> list[str]:
    notes = []
    if not results:
        notes.append("No lm-eval results (results.csv): reasoning accuracy is the sweep's greedy pass@1; no "
                     "memorization accuracy.")
    if not losses:
        notes.append("No task losses (taskloss.csv): the task-loss figures (a, b, d, e) and the matched-loss pairs "
                     "are empty.")
    return notes


def _per_problem_phases(inputs: Instruments, models: list[str], sweeps: Sweeps, strategy: str,
                        ks: list[int]) -> tuple[PerProblem, PerProblem]:
    """The per-problem values the paired tests need: the sampled setting at `ks`, and greedy."""
    trained = {m: inputs.trained[m] for m in models if m in inputs.trained}

    def after(setting: str | None, strategy: str, ks: list[int]) -> dict:
        values = per_problem(inputs.after_dir, list(trained.values()), setting, strategy, ks)
        return {m: values[trained[m]] for m in trained if trained[m] in values}

    sampled = PerProblem(per_problem(inputs.before_dir, models, sweeps.setting, strategy, ks),
                         after(sampled_setting(sweeps.after), strategy, ks))
    greedy = PerProblem(per_problem(inputs.before_dir, models, GREEDY, "pass", [1]) if sweeps.before else {},
                        after(GREEDY, "pass", [1]) if sweeps.after else {})
    return sampled, greedy


def _change_rows(models: list[str], params: dict, sampled: PerProblem, greedy: PerProblem, ks: list[int],
                 options: Any) -> list[Row]:
    """GRPO's change (after - before on the same problems) with its paired bootstrap CI: greedy, and every k."""
    from core.stats import bootstrap_ci
    from inference.deficit.gaps import aligned

    rows = []
    for m in models:
        changes = [(Measure.change(GREEDY), *greedy.at(m, 1))]
        changes += [(Measure.change(*sampled_budget(options.strategy, k)), *sampled.at(m, k)) for k in ks]
        for which, before, after in changes:
            if before and after:
                _, (before_values, after_values) = aligned(before, after)
                mean, low, high = bootstrap_ci(after_values - before_values, options.bootstrap, options.seed,
                                               options.level)
                rows.append(_row(m, which, float(mean[0]), params[m], low=float(low[0]), high=float(high[0]),
                                 n=len(before_values),
                                 source="paired bootstrap over problems (same problems and seeds)"))
    return rows


def families(models: list[str], params: dict[str, dict]) -> dict[tuple[int, int], list[str]]:
    """(d_model, top_k) -> members, sparsest first (lowest density = most experts)."""
    from checkpoints_index.params import family_of

    out: dict[tuple[int, int], list[str]] = {}
    for m in models:
        family = family_of(params[m])
        if family is not None:
            out.setdefault(family, []).append(m)
    return {f: sorted(ms, key=lambda m: params[m]["density"]) for f, ms in sorted(out.items())}


def default_pairs(models: list[str], params: dict[str, dict], value: dict, notes: list[str]) -> list[Pair]:
    """Within each family: most accurate vs sparsest; across top-k at one d: the nearest reasoning task losses.
    `value`: (model, Measure) -> value."""
    accuracy, loss = Measure.accuracy("reasoning"), Measure.loss("reasoning")
    pairs = []
    fams = families(models, params)
    for (d, k), members in fams.items():
        scored = [m for m in members if (m, accuracy) in value]
        if len(scored) < 2:
            continue
        best = max(scored, key=lambda m: value[m, accuracy])
        sparsest = scored[0]
        if best == sparsest:  # no deficit: test whether TTC/GRPO change the sparsest member's lead instead
            pairs.append(Pair(sparsest, scored[-1], f"d{d} top-{k}: no deficit, the sparsest member is the most "
                                                    f"accurate; its lead over the densest"))
        else:
            pairs.append(Pair(best, sparsest, f"d{d} top-{k}: most accurate vs sparsest"))
    for (d, k_low), low in fams.items():
        for (d2, k_high), high in fams.items():
            if d2 != d or k_high <= k_low:
                continue
            candidates = [(abs(value[x, loss] - value[y, loss]), x, y) for x in high for y in low
                          if (x, loss) in value and (y, loss) in value]
            if candidates:
                _, x, y = min(candidates)
                pairs.append(Pair(x, y, f"d{d}: top-{k_high} vs top-{k_low} at matched reasoning task loss"))
    return pairs


def _gap_rows(pair: Pair, sampled: PerProblem, ks: list[int], options: Any, notes: list[str]) -> list[Row]:
    """TTC (k=1 -> N, before and after GRPO) and GRPO (before -> after, at k=1 and N) gap tests of x over y."""
    x, y, why = pair
    tests = []
    n = max(ks) if ks else None
    for phase, data in (("before", sampled.before), ("after", sampled.after)):
        if x in data and y in data and n and n > 1:
            tests.append((Measure.ttc_gap(phase, options.strategy, n), data[x][1], data[y][1], data[x][n], data[y][n]))
    for k in ks:
        if all(m in sampled.before and m in sampled.after for m in (x, y)):
            before, after = sampled.before, sampled.after
            which = Measure.grpo_gap(*sampled_budget(options.strategy, k))
            tests.append((which, before[x][k], before[y][k], after[x][k], after[y][k]))
    if not tests:
        notes.append(f"{x} vs {y} ({why}): no per-problem sweep data for both, no gap test.")
    rows = []
    for which, x1, y1, x2, y2 in tests:
        g = gap_test(x1, y1, x2, y2, resamples=options.bootstrap, seed=options.seed, level=options.level)
        detail = (f"{why}; gap {g['gap_1']:+.4f} [{g['gap_1_low']:+.4f}, {g['gap_1_high']:+.4f}] -> {g['gap_2']:+.4f} "
                  f"[{g['gap_2_low']:+.4f}, {g['gap_2_high']:+.4f}]; {g['reason']}")
        rows.append(Row(f"{x} vs {y}", which, g["did"], g["did_low"], g["did_high"], g["num_problems"],
                        "paired bootstrap, difference-in-differences", g["verdict"], detail, gap=g, pair=pair))
    return rows


def _peak_rows(models: list[str], params: dict, sampled: PerProblem, options: Any, notes: list[str]) -> list[Row]:
    """Where pass@1 peaks along TPP in each family with >= 3 members, before and after GRPO."""
    rows = []
    for (d, k), members in families(models, params).items():
        tpp = {m: params[m]["tpp"] for m in members if math.isfinite(params[m]["tpp"])}
        if len(tpp) < 3:
            continue
        for phase, data in (("before", sampled.before), ("after", sampled.after)):
            have = [m for m in tpp if m in data and 1 in data[m]]
            if len(have) < 3:
                continue
            peak = peak_location({m: data[m][1] for m in have}, tpp, resamples=options.bootstrap, seed=options.seed,
                                 level=options.level)
            where = "interior" if peak["interior"] else "at the edge of the grid (no interior peak)"
            rows.append(Row(f"d{d} top-{k}", Measure.peak(phase), peak["peak"], peak["peak_low"], peak["peak_high"],
                            peak["num_problems"], "bootstrap of the argmax over problems", where,
                            f"peak at {peak['peak_model']}; {100 * peak['edge_share']:.0f}% of resamples peak at an "
                            f"edge; grid TPP {', '.join(f'{t:.3g}' for t in peak['grid'])}", peak=peak))
    return rows


def write_deficit_csv(analysis: Analysis, path: Path) -> Path:
    """deficit.csv (DEFICIT_COLUMNS), atomically."""
    return atomic_write_csv(path, (row.cells() for row in analysis.rows), DEFICIT_COLUMNS)

