"""The demo's last stage: per-member before/after plots, the cross-model plot, and report.md.

Reads only the metrics CSVs the sweeps wrote and the GRPO runs' `eval.csv`; every number in the
report is looked up from those files (`metric_value`), so a test can re-derive each one.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

STRATEGY_LABELS = {"pass": "pass@k", "majority": "majority@k", "best_of_n": "best-of-n@k (mean logprob)",
                   "weighted_majority": "weighted majority@k"}


def read_rows(path: Path) -> list[dict]:
    with Path(path).open() as f:
        return list(csv.DictReader(f))


def is_greedy(row: dict) -> bool:
    """Sweep metrics carry a `setting` column: `greedy` (T=0, one sample) or `T<temperature>`."""
    return row.get("setting", "") == "greedy"


def metric_value(rows: list[dict], model: str, strategy: str, k: int, greedy: bool = False) -> dict | None:
    """The metrics row of (model, strategy, k) in the sampled setting (or the greedy one)."""
    for row in rows:
        if row["model"] == model and row["strategy"] == strategy and int(row["k"]) == k and is_greedy(row) == greedy:
            return row
    return None


def _fmt(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{100 * float(row['accuracy']):.1f} [{100 * float(row['ci_low']):.1f}, {100 * float(row['ci_high']):.1f}]"


def _curves(rows: list[dict], model: str, strategy: str) -> tuple[list[int], list[float], list[float], list[float]]:
    points = sorted((int(r["k"]), float(r["accuracy"]), float(r["ci_low"]), float(r["ci_high"])) for r in rows
                    if r["model"] == model and r["strategy"] == strategy and not is_greedy(r))
    return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points], [p[3] for p in points]


def plot_member(member: str, trained: str, before: list[dict], after: list[dict], strategies: list[str],
                out: Path) -> Path:
    """Accuracy vs samples (log2 x) for one member, before (solid) and after GRPO (dashed), CI bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, strategy in enumerate(strategies):
        color = f"C{i}"
        for rows, model, style, when in ((before, member, "-", "before"), (after, trained, "--", "after")):
            ks, acc, lo, hi = _curves(rows, model, strategy)
            if ks:
                ax.plot(ks, acc, style, color=color, marker="o", ms=3,
                        label=f"{STRATEGY_LABELS.get(strategy, strategy)}, {when} GRPO")
                ax.fill_between(ks, lo, hi, color=color, alpha=0.12)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per problem k")
    ax.set_ylabel("accuracy")
    ax.set_title(member)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_cross_model(members: list[str], trained: dict[str, str], infos: dict[str, Any], before: list[dict],
                     after: list[dict], budgets: list[int], out: Path, strategy: str = "majority") -> Path:
    """The study's view: accuracy against total parameters, one line per (top-k group, sample budget),
    before (solid) vs after GRPO (dashed). Members of one top-k share their active parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    groups = sorted({infos[m].top_k for m in members})
    markers = "osD^v<>"
    for i, k in enumerate(budgets):
        for g, top_k in enumerate(groups):
            ordered = sorted((m for m in members if infos[m].top_k == top_k), key=lambda m: infos[m].total_params)
            for rows, style, when, names in ((before, "-", "before", {m: m for m in members}),
                                             (after, "--", "after", trained)):
                xs, ys = [], []
                for m in ordered:
                    row = metric_value(rows, names[m], strategy, k)
                    if row is not None:
                        xs.append(infos[m].total_params)
                        ys.append(float(row["accuracy"]))
                if xs:
                    ax.plot(xs, ys, style, color=f"C{i}", marker=markers[g % len(markers)],
                            label=f"{strategy}@{k}, top-{top_k}, {when} GRPO")
    ax.set_xscale("log")
    ax.set_xlabel("total parameters")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{strategy}@k vs total parameters")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _grpo_eval(grpo_dir: Path) -> tuple[dict | None, dict | None]:
    path = grpo_dir / "eval.csv"
    if not path.is_file():
        return None, None
    rows = read_rows(path)
    if not rows:
        return None, None
    first_step = min(int(r["step"]) for r in rows)
    last_step = max(int(r["step"]) for r in rows)
    first = next(r for r in rows if int(r["step"]) == first_step)
    last = next(r for r in rows if int(r["step"]) == last_step)
    return first, last


def write_report(run_dir: Path, members: list[str], trained: dict[str, str], before_csv: Path, after_csv: Path,
                 cfg: Any, grpo_dirs: dict[str, Path]) -> Path:
    from checkpoints_index.index import resolve

    before, after = read_rows(before_csv), read_rows(after_csv)
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    infos = {m: resolve(m) for m in members}
    params = {m: infos[m].total_params for m in members}
    strategies = list(cfg.strategies)
    k_max = max(int(r["k"]) for r in before if not is_greedy(r))
    for m in members:
        plot_member(m, trained[m], before, after, strategies, plots / f"{m}.png")
    plot_cross_model(members, trained, infos, before, after, [k for k in cfg.budgets if k <= k_max],
                     plots / "cross_model.png")

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
    lines += ["", "## Findings (numbers from the CSVs above)", ""]
    lines += _findings(members, trained, before, after, k_max, params)
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
              params: dict[str, int]) -> list[str]:
    out = []
    for m in sorted(members, key=lambda x: params[x]):
        b1, a1 = metric_value(before, m, "pass", 1), metric_value(after, trained[m], "pass", 1)
        bm = metric_value(before, m, "majority", k_max)
        bp = metric_value(before, m, "pass", k_max)
        if not (b1 and a1 and bm and bp):
            continue
        gain_rl = 100 * (float(a1["accuracy"]) - float(b1["accuracy"]))
        gain_vote = 100 * (float(bm["accuracy"]) - float(b1["accuracy"]))
        out.append(f"- {m} ({params[m]:,} total parameters): GRPO moved pass@1 by {gain_rl:+.1f} points "
                   f"({_pct(b1)} -> {_pct(a1)}); majority vote over {k_max} samples moved it by {gain_vote:+.1f} "
                   f"points ({_pct(b1)} -> {_pct(bm)}); coverage pass@{k_max} is {_pct(bp)}.")
    return out or ["- (no complete metrics to compare)"]


def _pct(row: dict) -> str:
    value = float(row["accuracy"])
    return "nan" if math.isnan(value) else f"{100 * value:.1f}%"
