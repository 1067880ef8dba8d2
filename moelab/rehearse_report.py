"""What a rehearsal reports: `rehearsal.json` (and, with `--record PATH`, PATH.json and a markdown summary
PATH.md beside it) and the summary printed at the end of `moelab rehearse`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], path: Path, record: str | None) -> None:
    from core.files import atomic_write

    text = json.dumps(report, indent=2, default=str) + "\n"
    atomic_write(path, lambda temp: Path(temp).write_text(text))
    if record:
        Path(record).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{record}.json").write_text(text)
        Path(f"{record}.md").write_text(markdown(report, f"{Path(record).name}.json"))


def markdown(report: dict[str, Any], json_name: str) -> str:
    """A short human summary of a rehearsal (the JSON beside it holds everything)."""
    m = report["provenance"]
    lines = [f"# Rehearsal of `{report['recipe']}` ({report['layers']} layers)", "",
             f"Written by `{report.get('command')}` on {m['date']}, commit `{m['commit']}`, "
             f"{m['device']} with {m['host']['cores']} cores; every figure below is in `{json_name}`.", "",
             "Rehearsed models (random-init stand-ins of the real architecture): "
             f"{', '.join(report['rehearsed_models'])}",
             "", "| stage | status | wall s | peak RSS MiB (self / largest child) |", "|---|---|---|---|"]
    for s in report["stages"]:
        rss = s["peak_rss_mib"]
        status = s["status"] + (f": {s['error']}" if s.get("error") else "")
        lines.append(f"| {s['name']} | {status} | {s['wall_s']} | {rss['self']} / {rss['largest_child']} |")
    plan = report.get("plan") or {}
    if plan:
        lines += ["", "## Plan of the real run (from the recipe, real models and sizes)", "",
                  "| job | model | total params | active params | model states GiB/GPU (ZeRO) | tokens to generate |",
                  "|---|---|---|---|---|---|"]
        for j in plan["jobs"]:
            mem = j.get("memory", {})
            zero = (f"{mem['model_states_gib_per_gpu']} (stage {j['deepspeed']['zero_stage']}, {j['gpus']} GPUs)"
                    if mem.get("estimator") else f"{j.get('weights_gib_bf16')} (bf16 weights)")
            cells = [j["job"], j["model"], j.get("total_params"), j.get("active_params"), zero,
                     j.get("tokens_to_generate")]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines += ["", "Totals: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in plan["totals"].items())]
    for item in report.get("not_rehearsed") or []:
        lines.append(f"- not rehearsed: {item}")
    return "\n".join(lines) + "\n"


def print_summary(report: dict[str, Any], path: Path) -> None:
    print(f"\n=== rehearsal of {report['recipe']} ({report['layers']} layers): {path}")
    for s in report["stages"]:
        rss = s["peak_rss_mib"]
        print(f"  {s['name']:<12} {s['status']:<7} {s['wall_s']:>8.1f} s  peak RSS {rss['self']:.0f} MiB "
              f"(largest child {rss['largest_child']:.0f} MiB){'  ' + s['error'] if s.get('error') else ''}")
    for j in (report.get("plan") or {}).get("jobs", []):
        mem = j.get("memory", {})
        extra = (f", ZeRO-{j['deepspeed']['zero_stage']} model states {mem['model_states_gib_per_gpu']} GiB/GPU "
                 f"on {j['gpus']} GPUs" if mem.get("estimator") else "")
        print(f"  plan: {j['job']} {j['model']}: {j.get('total_params')} total / {j.get('active_params')} active "
              f"params{extra}; tokens to generate {j.get('tokens_to_generate')}")
