"""report.md of `moelab deficit`: what the models show, in plain sentences, with every number from deficit.csv.

`findings` states, per (d_model, top_k) family, whether accuracy falls with sparsity (a deficit)
or not, then each gap test's verdict ("closes" / "does not close" only where its CI excludes zero,
"undetermined" otherwise: `inference.deficit.gaps`) and each TPP peak. `write_report` puts them under
report.md's "Findings" and, as data, in findings.json beside it (`read_findings`): the demo report embeds
that list, so the two reports never disagree and neither parses the other's text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from inference.deficit.analysis import Analysis, families
from inference.deficit.figures import FIGURES
from inference.deficit.measures import Measure

FINDINGS_JSON = "findings.json"


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.1f}"


def _cell(analysis: Analysis, model: str, which: Measure | None, ci: bool = False, percent: bool = True) -> str:
    row = None if which is None else analysis.row(model, which)
    if row is None or not math.isfinite(row.value):
        return "-"
    show = _pct if percent else (lambda v: f"{v:.3f}")
    if ci and math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
        signed = percent and which.kind == "grpo_change"  # a change, not a level: always with its sign
        fmt = (lambda v: f"{100 * v:+.1f}") if signed else show
        return f"{fmt(row.value)} [{fmt(row.ci_low)}, {fmt(row.ci_high)}]"
    return show(row.value)


def family_statements(analysis: Analysis) -> list[str]:
    """Per family with >= 2 members: does reasoning accuracy fall as the family gets sparser?"""
    out = []
    for (d, k), members in families(analysis.models, analysis.params).items():
        scored = [(m, analysis.row(m, Measure.accuracy("reasoning"))) for m in members]
        scored = [(m, r) for m, r in scored if r is not None and math.isfinite(r.value)]
        if len(scored) < 2:
            continue
        source = scored[0][1].source
        trail = ", ".join(f"E{int(analysis.params[m]['num_experts'])} {_pct(r.value)}%" for m, r in
                          reversed(scored))  # densest first
        best = max(scored, key=lambda mr: mr[1].value)
        sparsest = scored[0]
        if best[0] == sparsest[0]:
            verdict = ("accuracy is highest at the sparsest member: this family shows **no sparsity deficit** "
                       "(more experts only helped here)")
        else:
            drop = best[1].value - sparsest[1].value
            verdict = (f"accuracy peaks at {best[0]} and the sparsest member ({sparsest[0]}) is {100 * drop:.1f} points "
                       f"lower: a sparsity deficit of that size, tested below")
        out.append(f"- d{d} top-{k} ({source}): {trail} (densest to sparsest); {verdict}.")
    return out or ["- No family has two members with a reasoning accuracy: nothing to compare."]


def gap_statements(analysis: Analysis) -> list[str]:
    """Each gap test and TPP peak, in deficit.csv's order, with the numbers its row only summarises."""
    out = []
    for row in analysis.rows:
        if row.gap is not None:
            g = row.gap
            out.append(f"- {row.model}, {row.measure.name}: gap {100 * g['gap_1']:+.1f} pts "
                       f"[{100 * g['gap_1_low']:+.1f}, {100 * g['gap_1_high']:+.1f}] -> {100 * g['gap_2']:+.1f} "
                       f"[{100 * g['gap_2_low']:+.1f}, {100 * g['gap_2_high']:+.1f}], difference "
                       f"{100 * g['did']:+.1f} [{100 * g['did_low']:+.1f}, {100 * g['did_high']:+.1f}] on "
                       f"{g['num_problems']} problems: **{g['verdict']}** ({g['reason']}; {row.pair.why}).")
        elif row.peak is not None:
            p = row.peak
            out.append(f"- {row.model}, {row.measure.name}: peak at TPP {p['peak']:.3g} ({p['peak_model']}), 95% "
                       f"bootstrap CI [{p['peak_low']:.3g}, {p['peak_high']:.3g}], {row.verdict}.")
    return out or ["- No gap test could be run (no pair of models with per-problem sweep data)."]


def findings(analysis: Analysis) -> list[str]:
    """The report's findings as lines of Markdown: the family statements, the gap tests, the notes."""
    return ["What the family shows (accuracy by family, then the paired tests):", "", *family_statements(analysis),
            "", *gap_statements(analysis), *([""] + [f"- Note: {n}" for n in analysis.notes] if analysis.notes else [])]


def read_findings(out_dir: Path) -> list[str]:
    """The findings `write_report` stored in `out_dir` (findings.json), as it put them in report.md."""
    return json.loads((Path(out_dir) / FINDINGS_JSON).read_text())


def write_report(analysis: Analysis, out_dir: Path, title: str, inputs: list[str],
                 figures: dict[str, Path]) -> Path:
    """report.md in `out_dir`, and its findings as data in findings.json beside it; returns report.md."""
    n = analysis.n_max
    at_n = Measure.sweep("before", analysis.strategy, n) if n else None  # no sampled sweep: no such column
    strategy = at_n.budget if at_n else analysis.strategy
    found = findings(analysis)
    lines = [f"# Reasoning deficit: {title}", "",
             "Inputs: " + "; ".join(inputs) + ". Every number below is a row of `deficit.csv` beside this file. "
             "Accuracies in %, intervals are 95%: lm-eval's +-1.96 stderr, or percentile bootstraps over problems "
             "(paired where two models or two phases are compared: same problems, same sampling seeds). A verdict "
             "says \"closes\" or \"does not close\" only where its interval excludes zero.", "",
             "## Findings", "", *found, "",
             "## Measures", "",
             f"| model | d | E | k | TPP | density | reasoning acc | memorization acc | reasoning loss | "
             f"memorization loss | pass@1 before | {strategy} before | pass@1 after | GRPO change pass@1 (paired) |",
             "|---" * 14 + "|"]
    for m in analysis.models:
        p = analysis.params[m]
        lines.append(
            f"| {m} | {p['d_model']:.0f} | {p['num_experts']:.0f} | {p['top_k']:.0f} | {p['tpp']:.3g} | "
            f"{p['density']:.3g} | {_cell(analysis, m, Measure.accuracy('reasoning'))} | "
            f"{_cell(analysis, m, Measure.accuracy('memorization'))} | "
            f"{_cell(analysis, m, Measure.loss('reasoning'), percent=False)} | "
            f"{_cell(analysis, m, Measure.loss('memorization'), percent=False)} | "
            f"{_cell(analysis, m, Measure.sweep('before', 'pass'))} | {_cell(analysis, m, at_n)} | "
            f"{_cell(analysis, m, Measure.sweep('after', 'pass'))} | "
            f"{_cell(analysis, m, Measure.change('pass'), ci=True)} |")
    lines += ["", "## Figures", ""]
    lines += [f"![{letter}: {FIGURES[letter]}]({Path(path).relative_to(out_dir)})" for letter, path in figures.items()]
    (Path(out_dir) / FINDINGS_JSON).write_text(json.dumps(found, indent=1) + "\n")
    report = Path(out_dir) / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
