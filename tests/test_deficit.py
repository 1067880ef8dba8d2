"""`moelab deficit` on synthetic instrument outputs (results.csv, taskloss.csv, sweeps): the join, the pairs, the
verdicts, deficit.csv, the six figures and report.md. No model runs: the instruments' schemas are issue #14's."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from core.config import load_config
from inference.deficit.analysis import DEFICIT_COLUMNS, INDEX_COLUMNS
from inference.ttc.aggregate import COLUMNS, aggregate_samples, write_csv
from moelab.deficit import run_deficit
from moelab.deficit_schema import DeficitConfig

REPO = Path(__file__).resolve().parents[1]
# a d512 top-2 family whose middle member reasons best (a deficit at E32), and one top-8 member
ACCURACY = {"d512-E8-k2": 0.55, "d512-E16-k2": 0.75, "d512-E32-k2": 0.45, "d512-E8-k8": 0.8}
LOSS = {"d512-E8-k2": 1.30, "d512-E16-k2": 1.10, "d512-E32-k2": 1.25, "d512-E8-k8": 1.12}
MEMO = {"d512-E8-k2": 0.30, "d512-E16-k2": 0.35, "d512-E32-k2": 0.42, "d512-E8-k8": 0.33}
PROBLEMS, SAMPLES = 120, 8


def sweep_dir(root: Path, names: dict[str, str], lift: float, seed: int) -> Path:
    """A sweep run directory (scored.parquet + metrics.csv): per problem a latent ease shared by every model
    (the same problems and seeds), each model correct with its accuracy (+ `lift`) shifted by that ease."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    ease = rng.normal(0, 0.15, PROBLEMS)
    rows = []
    for base, name in names.items():
        for p in range(PROBLEMS):
            prob = float(np.clip(ACCURACY[base] + lift + ease[p], 0.02, 0.98))
            for setting, n in (("T0.8", SAMPLES), ("greedy", 1)):
                for i in range(n):
                    correct = bool(rng.random() < prob)
                    rows.append({"model": name, "dataset": "toy", "setting": setting, "problem_id": f"q{p}",
                                 "sample_idx": i, "answer": "1" if correct else str(rng.integers(2, 5)),
                                 "correct": correct, "score": float(rng.random()), "num_tokens": 40.0})
    root.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "scored.parquet")
    metrics = []
    for setting in ("T0.8", "greedy"):
        part = [r for r in rows if r["setting"] == setting]
        for row in aggregate_samples(part, strategies=["pass"] if setting == "greedy" else ["pass", "majority"],
                                     bootstrap=200):
            metrics.append({**row, "dataset": "toy", "setting": setting})
    write_csv(metrics, root / "metrics.csv", columns=[*COLUMNS, "dataset", "setting"])
    return root


@pytest.fixture(scope="module")
def deficit_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deficit")
    results = tmp / "results.csv"
    with results.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "task", "metric", "filter", "value", "stderr", "num_fewshot", "num_examples",
                         "backend", *INDEX_COLUMNS])
        for m, acc in ACCURACY.items():
            writer.writerow([m, "gsm8k", "exact_match", "flexible-extract", acc, 0.02, 4, 1319, "vllm", *[""] * 7])
            writer.writerow([m, "gsm8k", "exact_match", "strict-match", acc - 0.1, 0.02, 4, 1319, "vllm", *[""] * 7])
            writer.writerow([m, "triviaqa", "exact_match", "remove_whitespace", MEMO[m], 0.01, 4, 17944, "vllm",
                             *[""] * 7])
    losses = tmp / "taskloss.csv"
    with losses.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "task", "num_examples", "bits_per_token", "bits_per_byte", "nll_nats",
                         "answer_tokens", "answer_bytes", "bits_per_token_weighted"])
        for m in ACCURACY:
            writer.writerow([m, "gsm8k", 1319, LOSS[m], LOSS[m] / 4, 80.0, 120, 480, LOSS[m]])
            writer.writerow([m, "triviaqa", 1000, 3.0 - MEMO[m], 0.5, 9.0, 6, 24, 3.0 - MEMO[m]])
    before = sweep_dir(tmp / "before", {m: m for m in ACCURACY}, 0.0, seed=1)
    trained = {m: f"{m}-grpo" for m in ACCURACY}
    after = sweep_dir(tmp / "after", trained, 0.08, seed=2)
    cfg = load_config(REPO / "configs/deficit/toy.yaml", [
        f"models={json.dumps(list(ACCURACY))}", f"output_dir={tmp}", "run_name=run",
        f"eval.output={results}", f"taskloss.output={losses}", f"sweep.output={before}",
        f"grpo.after_sweep={after}", f"grpo.trained={json.dumps(trained)}", "eval.recipe=null", "taskloss.recipe=null",
        "sweep.recipe=null", "grpo.recipe=null", "reasoning.eval_task=gsm8k", "reasoning.loss_task=gsm8k",
        "memorization.eval_task=triviaqa", "memorization.eval_filter=remove_whitespace",
        "memorization.loss_task=triviaqa", "analysis.bootstrap=300"], schema=DeficitConfig)
    report = run_deficit(cfg)
    return report.parent


def rows_of(run_dir: Path) -> list[dict]:
    with (run_dir / "deficit.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_deficit_csv_joins_every_instrument_with_the_index_columns(deficit_run):
    rows = rows_of(deficit_run)
    assert list(rows[0]) == DEFICIT_COLUMNS
    by = {(r["model"], r["measure"]): r for r in rows}
    for m, acc in ACCURACY.items():
        assert float(by[m, "reasoning_accuracy"]["value"]) == pytest.approx(acc)
        assert float(by[m, "reasoning_accuracy"]["ci_low"]) == pytest.approx(acc - 1.96 * 0.02)
        assert float(by[m, "memorization_accuracy"]["value"]) == pytest.approx(MEMO[m])
        assert float(by[m, "reasoning_loss"]["value"]) == pytest.approx(LOSS[m])
        for measure in ("before_pass@1", f"before_majority@{SAMPLES}", "after_pass@1", "before_greedy",
                        "grpo_change_pass@1", "grpo_change_greedy"):
            assert (m, measure) in by, (m, measure)
    assert by["d512-E32-k2", "reasoning_accuracy"]["num_experts"] == "32"
    assert by["d512-E8-k8", "reasoning_accuracy"]["density"] == "1"
    assert float(by["d512-E8-k2", "reasoning_accuracy"]["total_params"]) == 320_160_256


def test_default_pairs_and_verdicts(deficit_run):
    rows = rows_of(deficit_run)
    gaps = [r for r in rows if r["measure"].startswith("gap_")]
    pairs = {r["model"] for r in gaps}
    assert "d512-E16-k2 vs d512-E32-k2" in pairs  # within the family: most accurate vs sparsest
    assert "d512-E8-k8 vs d512-E16-k2" in pairs  # across top-k at the nearest reasoning loss (1.12 vs 1.10)
    for r in gaps:
        assert r["verdict"] in ("closes", "does not close", "undetermined")
        low, high = float(r["ci_low"]), float(r["ci_high"])
        if r["verdict"] == "closes":  # a claim only where the interval excludes zero
            assert low > 0 or high < 0
    peaks = [r for r in rows if r["measure"].startswith("tpp_peak")]
    assert {r["model"] for r in peaks} == {"d512 top-2"}
    before_peak = next(r for r in peaks if "before" in r["measure"])
    assert before_peak["verdict"] == "interior" and "d512-E16-k2" in before_peak["detail"]


def test_six_figures_and_a_report_that_quotes_the_csv(deficit_run):
    figures = sorted((deficit_run / "figures").glob("*.png"))
    assert [p.name[0] for p in figures] == list("abcdef")
    assert all(p.stat().st_size > 10_000 for p in figures)
    report = (deficit_run / "report.md").read_text()
    assert "a sparsity deficit" in report and "d512 top-2" in report
    by = {(r["model"], r["measure"]): r for r in rows_of(deficit_run)}
    change = by["d512-E16-k2", "grpo_change_pass@1"]
    assert f"{100 * float(change['value']):+.1f} [{100 * float(change['ci_low']):+.1f}, " in report


def test_each_measure_name_is_spelled_by_its_measure():
    """deficit.csv's `measure` column, as every reader looks it up (`Measure.name`): changing a spelling here
    changes the file's schema."""
    from inference.deficit.measures import GREEDY, Measure, sampled_budget

    assert Measure.accuracy("reasoning").name == "reasoning_accuracy"
    assert Measure.loss("memorization").name == "memorization_loss"
    assert Measure.sweep("before", GREEDY).name == "before_greedy"
    assert Measure.sweep("after", "majority", 8).name == "after_majority@8"
    assert Measure.sweep("before", "majority", 1).name == "before_majority@1"  # the sweep's own rows keep k=1
    assert Measure.change(*sampled_budget("majority", 1)).name == "grpo_change_pass@1"
    assert Measure.ttc_gap("before", "majority", 8).name == "gap_ttc pass@1->majority@8 (before GRPO)"
    assert Measure.grpo_gap("majority", 8).name == "gap_grpo majority@8 (before->after)"
    assert Measure.peak("after").name == "tpp_peak pass@1 (after GRPO)"
    assert Measure.sweep("before", "pass") == Measure.sweep("before", "pass", 1)  # lookups build equal measures


def test_findings_are_stored_as_data_beside_the_report(deficit_run):
    from inference.deficit.report import read_findings

    found = read_findings(deficit_run)
    report = (deficit_run / "report.md").read_text()
    assert "\n## Findings\n\n" + "\n".join(found) + "\n\n## Measures\n" in report
    assert any("**closes**" in line or "**does not close**" in line or "**undetermined**" in line for line in found)


@pytest.mark.slow
def test_the_demo_report_quotes_the_deficit_findings_and_paired_changes(deficit_run, tmp_path):
    """The demo's report from the deficit stage's files: its findings as stored, its changes by measure."""
    from types import SimpleNamespace

    from inference.deficit.report import read_findings
    from moelab.demo_report import _fmt_change, paired_change, write_report

    members, sweeps = list(ACCURACY), deficit_run.parent
    cfg = SimpleNamespace(run_name="demo", strategies=["pass", "majority"], budgets=[1, 2, 4, 8])
    report = write_report(tmp_path, members, {m: f"{m}-grpo" for m in members}, sweeps / "before" / "metrics.csv",
                          sweeps / "after" / "metrics.csv", cfg, grpo_dirs={m: tmp_path / m for m in members},
                          deficit_dir=deficit_run).read_text()
    assert "\n".join(read_findings(deficit_run)) in report
    rows = rows_of(deficit_run)
    for m in members:
        changes = [paired_change(rows, m, *budget) for budget in (("greedy", 1), ("pass", 1), ("majority", SAMPLES))]
        assert [c["measure"] for c in changes] == ["grpo_change_greedy", "grpo_change_pass@1",
                                                   f"grpo_change_majority@{SAMPLES}"]
        assert f"| {m} | " + " | ".join(_fmt_change(c) for c in changes) + " |" in report


def test_recipes_resolve():
    from moelab.recipes import load_recipe

    for name in ("toy", "paper-d512", "paper"):
        path = REPO / f"configs/deficit/{name}.yaml"
        if name == "toy" and not (REPO / "configs/taskloss/toy.yaml").exists():
            continue  # the toy taskloss recipe comes with `moelab taskloss` (issue #14)
        cfg = load_recipe(path)
        assert cfg.kind == "deficit"
    paper = load_recipe(REPO / "configs/deficit/paper.yaml")
    assert {"d512-E128-k2", "d1024-E64-k2", "d2048-E16-k2"} <= set(paper.models)
