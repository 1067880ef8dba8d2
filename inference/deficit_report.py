"""report.md of `moelab deficit`: what the models show, in plain sentences, with every number from deficit.csv.

`summary_lines` states, per (d_model, top_k) family, whether accuracy falls with sparsity (a deficit)
or not, then each gap test's verdict ("closes" / "does not close" only where its CI excludes zero,
"undetermined" otherwise: `inference.gaps`) and each TPP peak. The demo report embeds the same lines,
so the two never disagree.
"""

from __future__ import annotations

import math
from pathlib import Path

from inference.deficit import Analysis, families, measure
from inference.deficit_figures import FIGURES


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.1f}"


def _cell(analysis: Analysis, model: str, name: str, ci: bool = False, percent: bool = True) -> str:
    row = measure(analysis, model, name)
    if row is None or not math.isfinite(row["value"]):
        return "-"
    show = _pct if percent else (lambda v: f"{v:.3f}")
    if ci and math.isfinite(row["ci_low"]) and math.isfinite(row["ci_high"]):
        sign = "+" if percent and name.startswith("grpo_change") else ""
        fmt = (lambda v: f"{100 * v:+.1f}") if sign else show
        return f"{fmt(row['value'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"
    return show(row["value"])


def family_statements(analysis: Analysis) -> list[str]:
    """Per family with >= 2 members: does reasoning accuracy fall as the family gets sparser?"""
    out = []
    for (d, k), members in families(analysis.models, analysis.params).items():
        scored = [(m, measure(analysis, m, "reasoning_accuracy")) for m in members]
        scored = [(m, r) for m, r in scored if r is not None and math.isfinite(r["value"])]
        if len(scored) < 2:
            continue
        source = scored[0][1]["source"]
        trail = ", ".join(f"E{int(analysis.params[m]['num_experts'])} {_pct(r['value'])}%" for m, r in
                          reversed(scored))  # densest first
        best = max(scored, key=lambda mr: mr[1]["value"])
        sparsest = scored[0]
        if best[0] == sparsest[0]:
            verdict = ("accuracy is highest at the sparsest member: this family shows **no sparsity deficit** "
                       "(more experts only helped here)")
        else:
            drop = best[1]["value"] - sparsest[1]["value"]
            verdict = (f"accuracy peaks at {best[0]} and the sparsest member ({sparsest[0]}) is {100 * drop:.1f} points "
                       f"lower: a sparsity deficit of that size, tested below")
        out.append(f"- d{d} top-{k} ({source}): {trail} (densest to sparsest); {verdict}.")
    return out or ["- No family has two members with a reasoning accuracy: nothing to compare."]


def gap_statements(analysis: Analysis) -> list[str]:
    out = []
    for row in analysis.rows:
        if "_gap" in row:
            g = row["_gap"]
            out.append(f"- {row['model']}, {row['measure']}: gap {100 * g['gap_1']:+.1f} pts "
                       f"[{100 * g['gap_1_low']:+.1f}, {100 * g['gap_1_high']:+.1f}] -> {100 * g['gap_2']:+.1f} "
                       f"[{100 * g['gap_2_low']:+.1f}, {100 * g['gap_2_high']:+.1f}], difference "
                       f"{100 * g['did']:+.1f} [{100 * g['did_low']:+.1f}, {100 * g['did_high']:+.1f}] on "
                       f"{g['num_problems']} problems: **{g['verdict']}** ({g['reason']}; {row['_pair'][2]}).")
        elif "_peak" in row:
            p = row["_peak"]
            out.append(f"- {row['model']}, {row['measure']}: peak at TPP {p['peak']:.3g} ({p['peak_model']}), 95% "
                       f"bootstrap CI [{p['peak_low']:.3g}, {p['peak_high']:.3g}], {row['verdict']}.")
    return out or ["- No gap test could be run (no pair of models with per-problem sweep data)."]


def summary_lines(analysis: Analysis) -> list[str]:
    return ["What the family shows (accuracy by family, then the paired tests):", "", *family_statements(analysis),
            "", *gap_statements(analysis), *([""] + [f"- Note: {n}" for n in analysis.notes] if analysis.notes else [])]


def write_report(analysis: Analysis, out_dir: Path, title: str, inputs: list[str],
                 figures: dict[str, Path]) -> Path:
    n = analysis.n_max
    strategy = f"{analysis.strategy}@{n}" if n else analysis.strategy
    lines = [f"# Reasoning deficit: {title}", "",
             "Inputs: " + "; ".join(inputs) + ". Every number below is a row of `deficit.csv` beside this file. "
             "Accuracies in %, intervals are 95%: lm-eval's +-1.96 stderr, or percentile bootstraps over problems "
             "(paired where two models or two phases are compared: same problems, same sampling seeds). A verdict "
             "says \"closes\" or \"does not close\" only where its interval excludes zero.", "",
             "## Findings", "", *summary_lines(analysis), "",
             "## Measures", "",
             f"| model | d | E | k | TPP | density | reasoning acc | memorization acc | reasoning loss | "
             f"memorization loss | pass@1 before | {strategy} before | pass@1 after | GRPO change pass@1 (paired) |",
             "|---" * 14 + "|"]
    for m in analysis.models:
        p = analysis.params[m]
        lines.append(
            f"| {m} | {p['d_model']:.0f} | {p['num_experts']:.0f} | {p['top_k']:.0f} | {p['tpp']:.3g} | "
            f"{p['density']:.3g} | {_cell(analysis, m, 'reasoning_accuracy')} | "
            f"{_cell(analysis, m, 'memorization_accuracy')} | {_cell(analysis, m, 'reasoning_loss', percent=False)} | "
            f"{_cell(analysis, m, 'memorization_loss', percent=False)} | {_cell(analysis, m, 'before_pass@1')} | "
            f"{_cell(analysis, m, f'before_{strategy}')} | {_cell(analysis, m, 'after_pass@1')} | "
            f"{_cell(analysis, m, 'grpo_change_pass@1', ci=True)} |")
    lines += ["", "## Figures", ""]
    lines += [f"![{letter}: {FIGURES[letter]}]({Path(path).relative_to(out_dir)})" for letter, path in figures.items()]
    report = Path(out_dir) / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
