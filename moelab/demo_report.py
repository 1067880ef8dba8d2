"""The demo's last stage: per-member before/after plots, the cross-model plot, and report.md.

Reads only the metrics CSVs the sweeps wrote (`inference.ttc.aggregate.read_metrics`), the GRPO runs'
`eval.csv` and `summary.json` (and the SFT controls'), the deficit stage's `deficit.csv` and its findings
(`findings.json`, the list its report.md shows: `inference.deficit.report.read_findings`); every number in
the report is looked up from those files (`metric_value`, `paired_change`), so a test can re-derive each one.
Before -> after GRPO changes are quoted with their *paired* CIs (deficit.csv's `grpo_change_*`
rows: the same problems and sampling seeds in both sweeps, so problem difficulty cancels); the
per-sweep accuracies keep their own CIs. The figures are `inference.ttc.plots`' own, the sampled setting only
(greedy is one point, in the table): the after-GRPO rows carry their member's name and a `run`
column tells the two sweeps apart (`style_by`). The cross-model lines are (d_model, top_k) families,
as everywhere (`checkpoints_index.params.family_of`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from inference.deficit.measures import GREEDY, Measure

BEFORE, AFTER = "before GRPO", "after GRPO"


def is_greedy(row: dict) -> bool:
    """Sweep metrics carry a `setting` column: `greedy` (T=0, one sample) or `T<temperature>`."""
    return row.get("setting", "") == "greedy"


def metric_value(rows: list[dict], model: str, strategy: str, k: int, greedy: bool = False) -> dict | None:
    """The metrics row of (model, strategy, k) in the sampled setting (or the greedy one)."""
    for row in rows:
        if row["model"] == model and row["strategy"] == strategy and row["k"] == k and is_greedy(row) == greedy:
            return row
    return None


def _fmt(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{100 * row['accuracy']:.1f} [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"


def _runs(members: list[str], trained: dict[str, str], before: list[dict], after: list[dict]) -> list[dict]:
    """Sampled rows of both sweeps, each under its member's name, with `run` saying which sweep."""
    member_of = {trained[m]: m for m in members}
    rows = [{**r, "run": BEFORE} for r in before if r["model"] in members and not is_greedy(r)]
    return rows + [{**r, "model": member_of[r["model"]], "run": AFTER} for r in after
                   if r["model"] in member_of and not is_greedy(r)]


def _plots(plots: Path, members: list[str], rows: list[dict], strategies: list[str], budgets: list[int]) -> None:
    from checkpoints_index.params import model_params
    from inference.ttc.plots import plot_cross_model, plot_curves, save_figure

    for m in members:
        mine = [r for r in rows if r["model"] == m]
        save_figure(plot_curves(mine, "samples", strategies, style_by="run"), plots / f"{m}.png")
    figure = plot_cross_model(rows, model_params(members), "total_params", "majority", budgets, style_by="run")
    save_figure(figure, plots / "cross_model.png")


def _grpo_eval(grpo_dir: Path) -> tuple[dict | None, dict | None]:
    path = grpo_dir / "eval.csv"
    if not path.is_file():
        return None, None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None, None
    first_step = min(int(r["step"]) for r in rows)
    last_step = max(int(r["step"]) for r in rows)
    first = next(r for r in rows if int(r["step"]) == first_step)
    last = next(r for r in rows if int(r["step"]) == last_step)
    return first, last


def paired_change(deficit_rows: list[dict], model: str, strategy: str, k: int = 1) -> dict | None:
    """The deficit stage's paired before -> after change of `model` at a budget (greedy, pass 1, majority 32)."""
    name = Measure.change(strategy, k).name
    return next((r for r in deficit_rows if r["model"] == model and r["measure"] == name), None)


def _fmt_change(row: dict | None) -> str:
    if row is None:
        return "-"
    v, low, high = (100 * float(row[c]) for c in ("value", "ci_low", "ci_high"))
    return f"{v:+.1f} [{low:+.1f}, {high:+.1f}]"


def eval_change(run_dir: Path) -> dict | None:
    """The paired greedy before -> after change a GRPO or SFT-control run recorded (`summary.json`,
    `eval_change`, its one eval set), or None."""
    import json

    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    changes = json.loads(path.read_text()).get("eval_change") or {}
    return next(iter(changes.values()), None)


def _fmt_eval_change(change: dict | None) -> str:
    if change is None:
        return "-"
    return (f"{100 * change['before']:.1f} -> {100 * change['after']:.1f}: {100 * change['change']:+.1f} "
            f"[{100 * change['ci_low']:+.1f}, {100 * change['ci_high']:+.1f}]")


def _control_section(members: list[str], grpo_dirs: dict[str, Path], sft_dirs: dict[str, Path], cfg: Any) -> list[str]:
    s = cfg.sft_control
    lines = ["", "## GRPO beside the SFT-on-gold control", "",
             f"Greedy accuracy on each GRPO run's own eval problems, before -> after, and the paired change (points, "
             f"95% paired bootstrap CI over problems; `summary.json` of each run). The control trains the same "
             f"member on the gold solutions of the same training problems ({s.steps} steps x {s.batch_size}, "
             f"constant LR {s.learning_rate:g}, `rl.sft_control`): a GRPO gain no larger than the control's says "
             f"little about what the reward taught.", "",
             "| member | GRPO | SFT on gold |", "|---|---|---|"]
    for m in members:
        sft = eval_change(sft_dirs[m]) if m in sft_dirs else None
        lines.append(f"| {m} | {_fmt_eval_change(eval_change(grpo_dirs[m]))} | {_fmt_eval_change(sft)} |")
    return lines


def write_report(run_dir: Path, members: list[str], trained: dict[str, str], before_csv: Path, after_csv: Path,
                 cfg: Any, grpo_dirs: dict[str, Path], deficit_dir: Path | None = None,
                 sft_dirs: dict[str, Path] | None = None) -> Path:
    from checkpoints_index.index import resolve
    from inference.deficit.analysis import read_table
    from inference.deficit.report import read_findings
    from inference.ttc.aggregate import read_metrics

    before, after = read_metrics(before_csv), read_metrics(after_csv)
    deficit_rows = [] if deficit_dir is None else read_table(deficit_dir / "deficit.csv", ["model", "measure", "value",
                                                                                           "ci_low", "ci_high"],
                                                             "deficit.csv")
    infos = {m: resolve(m) for m in members}
    params = {m: infos[m].total_params for m in members}
    k_max = max(r["k"] for r in before if not is_greedy(r))
    _plots(run_dir / "plots", members, _runs(members, trained, before, after), list(cfg.strategies),
           [k for k in cfg.budgets if k <= k_max])

    lines = [f"# Demo report: {cfg.run_name}", "",
             f"Members: {', '.join(members)}. Sweeps: `{before_csv.parent}` (before GRPO) and `{after_csv.parent}` "
             f"(after). Accuracy in %, with 95% bootstrap CIs over problems, as `value [low, high]`.", "",
             "## Test-time compute before and after GRPO", "",
             f"| member | total | active | greedy before | greedy after | pass@1 before | pass@1 after "
             f"| majority@{k_max} before | majority@{k_max} after | pass@{k_max} before | pass@{k_max} after |",
             "|---" * 11 + "|"]
    for m in members:
        t = trained[m]
        cells = [_fmt(metric_value(before, m, "pass", 1, greedy=True)), _fmt(metric_value(after, t, "pass", 1, greedy=True)),
                 _fmt(metric_value(before, m, "pass", 1)), _fmt(metric_value(after, t, "pass", 1)),
                 _fmt(metric_value(before, m, "majority", k_max)), _fmt(metric_value(after, t, "majority", k_max)),
                 _fmt(metric_value(before, m, "pass", k_max)), _fmt(metric_value(after, t, "pass", k_max))]
        lines.append(f"| {m} | {infos[m].total_params:,} | {infos[m].active_params:,} | " + " | ".join(cells) + " |")
    lines += ["", "## GRPO's change, paired (after - before, points, 95% paired bootstrap CI over problems)", "",
              f"Both sweeps score the same problems with the same sampling seeds, so the change is resampled problem "
              f"by problem (`{deficit_dir}/deficit.csv`, rows `grpo_change_*`).", "",
              f"| member | greedy | pass@1 | majority@{k_max} |", "|---|---|---|---|"]
    for m in members:
        lines.append(f"| {m} | " + " | ".join(_fmt_change(paired_change(deficit_rows, m, *budget)) for budget in
                                            ((GREEDY, 1), ("pass", 1), ("majority", k_max))) + " |")
    if sft_dirs:
        lines += _control_section(members, grpo_dirs, sft_dirs, cfg)
    lines += ["", "## Findings (numbers from the CSVs above)", ""]
    lines += _findings(members, trained, before, after, k_max, params, deficit_rows)
    if deficit_dir is not None:
        lines += ["", "## The reasoning deficit in this family", "",
                  f"From `moelab deficit` on the two sweeps (`{deficit_dir}/report.md`, every figure in "
                  f"`{deficit_dir}/figures/`).", "", *read_findings(deficit_dir), "",
                  "![accuracy vs density](deficit/figures/f_accuracy_vs_density.png)",
                  "![TTC: accuracy vs task loss](deficit/figures/d_ttc_accuracy_vs_taskloss.png)"]
    lines += ["", "## GRPO runs", "", "| member | eval at first step | eval at last step | run dir |", "|---|---|---|---|"]
    for m in members:
        first, last = _grpo_eval(grpo_dirs[m])
        show = (lambda r: f"{100 * float(r['accuracy']):.1f}% (step {r['step']}, n={r['num_problems']})" if r else "-")
        lines.append(f"| {m} | {show(first)} | {show(last)} | `{grpo_dirs[m]}` |")
    lines += ["", "## Plots", "", "![cross-model](plots/cross_model.png)", ""]
    lines += [f"![{m}](plots/{m}.png)" for m in members]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _findings(members: list[str], trained: dict[str, str], before: list[dict], after: list[dict], k_max: int,
              params: dict[str, int], deficit_rows: list[dict]) -> list[str]:
    out = []
    for m in sorted(members, key=lambda x: params[x]):
        b1, a1 = metric_value(before, m, "pass", 1), metric_value(after, trained[m], "pass", 1)
        bm = metric_value(before, m, "majority", k_max)
        bp = metric_value(before, m, "pass", k_max)
        if not (b1 and a1 and bm and bp):
            continue
        gain_rl = 100 * (a1["accuracy"] - b1["accuracy"])
        gain_vote = 100 * (bm["accuracy"] - b1["accuracy"])
        change = paired_change(deficit_rows, m, "pass", 1)
        paired = "" if change is None else (f", paired 95% CI [{100 * float(change['ci_low']):+.1f}, "
                                            f"{100 * float(change['ci_high']):+.1f}]")
        out.append(f"- {m} ({params[m]:,} total parameters): GRPO moved pass@1 by {gain_rl:+.1f} points{paired} "
                   f"({_pct(b1)} -> {_pct(a1)}); majority vote over {k_max} samples moved it by {gain_vote:+.1f} "
                   f"points ({_pct(b1)} -> {_pct(bm)}); coverage pass@{k_max} is {_pct(bp)}.")
    return out or ["- (no complete metrics to compare)"]


def _pct(row: dict) -> str:
    return "nan" if math.isnan(row["accuracy"]) else f"{100 * row['accuracy']:.1f}%"
