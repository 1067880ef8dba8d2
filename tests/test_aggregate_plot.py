"""`moelab aggregate` and `moelab plot` on small files: columns, rows, CIs, compute axes, errors, figures."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from checkpoints_index.params import model_params
from core.errors import UserError
from inference.ttc import aggregate_cli, plot_cli
from inference.ttc.aggregate import COLUMNS, aggregate_samples, bootstrap_ci, read_metrics
from inference.ttc.estimators import STRATEGIES
from inference.ttc.plots import plot_cross_model, plot_curves

MODELS = ("d512-E8-k2", "my-local-model")  # one the checkpoint index knows, one it does not


def write_samples(path, num_problems=6, num_samples=8, seed=0):
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for model in MODELS:
            for p in range(num_problems):
                for i in range(num_samples):
                    answer = None if rng.random() < 0.15 else int(rng.integers(3))
                    f.write(json.dumps({"model": model, "problem_id": f"q{p}", "sample_idx": i, "answer": answer,
                                        "correct": answer == 1, "score": round(float(rng.random()), 2),
                                        "num_tokens": int(rng.integers(20, 60)), "prompt_tokens": 30 + p}) + "\n")
    return path


def cli_args(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agg")
    samples = write_samples(tmp / "samples.jsonl")
    out = tmp / "metrics.csv"
    assert aggregate_cli.run(cli_args(aggregate_cli, [str(samples), "--out", str(out), "--bootstrap", "200",
                                                      "--paired", str(tmp / "pairs.csv")])) == 0
    return tmp, samples, out


def test_aggregate_cli_writes_every_model_strategy_k(metrics):
    tmp, _, out = metrics
    with out.open() as f:
        header = next(csv.reader(f))
    assert header[:9] == COLUMNS[:9]
    rows = read_metrics(out)
    assert {(r["model"], r["strategy"], r["k"]) for r in rows} == {
        (m, s, k) for m in MODELS for s in STRATEGIES for k in (1, 2, 4, 8)}
    assert len(rows) == 2 * 4 * 4
    for r in rows:
        assert r["num_problems"] == 6 and r["estimator"] == "exact"
        assert r["ci_low"] <= r["accuracy"] <= r["ci_high"]
    known = [r for r in rows if r["model"] == "d512-E8-k2" and r["strategy"] == "pass"]
    from checkpoints_index.index import resolve

    info = resolve("d512-E8-k2")
    forward = info.active_params - info.vocab_size * info.d_model  # the input embedding is a lookup, no FLOPs
    assert forward == 118_178_304
    assert known[1]["mean_tokens"] == pytest.approx(2 * known[0]["mean_tokens"])
    prompt = np.mean([30 + p for p in range(6)])  # prompt tokens count once per sample (inference.ttc.compute)
    assert known[2]["flops"] == pytest.approx(2 * forward * (known[2]["mean_tokens"] + known[2]["k"] * prompt))
    assert all(math.isnan(r["flops"]) for r in rows if r["model"] == "my-local-model")
    # pass@k never below majority@k on the same k; pass@1 == majority@1 == best-of-n@1
    by_key = {(r["model"], r["strategy"], r["k"]): r["accuracy"] for r in rows}
    for m in MODELS:
        assert by_key[m, "pass", 1] == pytest.approx(by_key[m, "majority", 1])
        assert by_key[m, "pass", 1] == pytest.approx(by_key[m, "best_of_n", 1])
        assert all(by_key[m, "pass", k] >= by_key[m, "majority", k] - 1e-12 for k in (1, 2, 4, 8))
    pairs = list(csv.DictReader((tmp / "pairs.csv").open()))
    assert {(p["a_strategy"], p["b_strategy"]) for p in pairs if p["a_model"] == p["b_model"]} >= {
        ("pass", "majority")}
    cross = [p for p in pairs if p["a_model"] != p["b_model"]]
    assert len(cross) == 4 * 4  # 4 strategies x 4 ks, the two models on their 6 shared problems


def test_prefix_estimator_and_explicit_ks(metrics, tmp_path):
    _, samples, _ = metrics
    out = tmp_path / "prefix.csv"
    aggregate_cli.run(cli_args(aggregate_cli, [str(samples), "--out", str(out), "--k", "1,3,16",
                                               "--estimator", "prefix", "--strategies", "pass,majority"]))
    rows = read_metrics(out)
    assert {r["k"] for r in rows} == {1, 3}  # 16 > 8 samples: skipped with a warning
    assert {r["estimator"] for r in rows} == {"prefix"}


def test_bootstrap_is_seeded_and_contains_the_mean():
    values = np.random.default_rng(3).random((50, 3))
    mean, low, high = bootstrap_ci(values, 500, seed=1)
    assert np.allclose(mean, values.mean(0)) and np.all(low <= mean) and np.all(mean <= high)
    again = bootstrap_ci(values, 500, seed=1)
    other = bootstrap_ci(values, 500, seed=2)
    assert np.array_equal(again[1], low) and np.array_equal(again[2], high)
    assert not np.array_equal(other[1], low)


def test_aggregate_samples_api_is_reproducible(metrics):
    _, samples, _ = metrics
    a = aggregate_samples(samples, [2, 4], ["majority"], bootstrap=100, seed=5)
    b = aggregate_samples(samples, [2, 4], ["majority"], bootstrap=100, seed=5)
    assert repr(a) == repr(b) and len(a) == 2 * 2  # repr: NaN flops compare equal


def test_bad_inputs_name_what_to_fix(tmp_path):
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"problem_id": "a", "sample_idx": 0, "answer": "1"}) + "\n")
    with pytest.raises(UserError, match=r"missing\.jsonl.*'correct'"):
        aggregate_samples(missing)
    no_answer_column = tmp_path / "noanswer.jsonl"
    no_answer_column.write_text(json.dumps({"problem_id": "a", "sample_idx": 0, "correct": True}) + "\n")
    with pytest.raises(UserError, match=r"noanswer\.jsonl.*'answer'"):
        aggregate_samples(no_answer_column)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"problem_id": "a", "sample_idx": 0, "answer": "1", "correct": True}) + "\n{oops\n")
    with pytest.raises(UserError, match=r"broken\.jsonl:2: bad JSON"):
        aggregate_samples(broken)
    duplicate = tmp_path / "dup.jsonl"
    row = json.dumps({"problem_id": "a", "sample_idx": 0, "answer": "1", "correct": True})
    duplicate.write_text(row + "\n" + row + "\n")
    with pytest.raises(UserError, match="duplicate sample"):
        aggregate_samples(duplicate)
    no_score = tmp_path / "noscore.jsonl"
    no_score.write_text(row + "\n")
    with pytest.raises(UserError, match="needs a score column"):
        aggregate_samples(no_score, strategies=["best_of_n"])
    with pytest.raises(UserError, match="no such samples"):
        aggregate_samples(tmp_path / "nope.jsonl")


@pytest.mark.slow
def test_plot_writes_png_with_one_line_per_strategy(metrics):
    tmp, _, out = metrics
    rows = read_metrics(out)
    fig = plot_curves(rows)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2 and all(len(ax.get_lines()) == 4 for ax in panels)
    assert all(len(ax.collections) == 4 for ax in panels)  # one CI band per strategy
    png = tmp / "curves.png"
    assert plot_cli.run(cli_args(plot_cli, [str(out), "--out", str(png), "--x", "tokens"])) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UserError, match="flops"):  # my-local-model has no FLOPs
        plot_cli.run(cli_args(plot_cli, [str(out), "--out", str(tmp / "f.png"), "--x", "flops"]))


@pytest.mark.parametrize("num_samples", [32, 24])
def test_sweep_and_aggregate_use_the_same_k_grid(tmp_path, num_samples):
    from types import SimpleNamespace

    import pyarrow as pa
    import pyarrow.parquet as pq

    from inference.sweep.run import aggregate_and_plot

    rows = [{"model": "m", "dataset": "toy", "setting": "T0.8", "problem_id": f"q{p}", "sample_idx": i,
             "answer": str(i % 3), "correct": i % 3 == 0, "score": 0.5} for p in range(3) for i in range(num_samples)]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "scored.parquet")
    recipe = SimpleNamespace(k=None, strategies=["pass"], estimator="exact", bootstrap=0, seed=0, vote_weight="auto")
    cfg = SimpleNamespace(sampling=SimpleNamespace(num_samples=num_samples), aggregate=recipe,
                          scoring=SimpleNamespace(rule="lab", best_of_n_score="mean_logprob"))
    swept = aggregate_and_plot(tmp_path / "scored.parquet", tmp_path / "sweep", cfg, ["aggregate"])["metrics"]
    aggregate_cli.run(cli_args(aggregate_cli, [str(samples), "--out", str(tmp_path / "agg.csv"),
                                               "--strategies", "pass", "--bootstrap", "0"]))
    grid = [r["k"] for r in read_metrics(swept)]
    assert grid == [r["k"] for r in read_metrics(tmp_path / "agg.csv")]
    assert grid[-1] == num_samples and grid[:5] == [1, 2, 4, 8, 16]


def test_curves_of_two_runs_share_a_panel_by_line_style(metrics):
    _, _, out = metrics
    rows = [r for r in read_metrics(out) if r["model"] == MODELS[0]]
    runs = [{**r, "run": "before GRPO"} for r in rows] + [{**r, "run": "after GRPO"} for r in rows]
    fig = plot_curves(runs, strategies=["pass", "majority"], style_by="run")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--", "-", "--"]
    assert ax.get_legend_handles_labels()[1][:2] == ["pass@k, before GRPO", "pass@k, after GRPO"]
    assert len(ax.collections) == 4 and ax.get_xlabel() == "samples per problem (k)"  # a CI band per line
    with pytest.raises(UserError, match="style_by='phase'"):
        plot_curves(runs, style_by="phase")


def test_cross_model_plot_draws_a_line_per_family(metrics):
    tmp, _, out = metrics
    rows = read_metrics(out)
    params = {"d512-E8-k2": dict(total_params=3e8, active_params=1e8, tpp=400.0, density=0.25, d_model=512, top_k=2),
              "my-local-model": dict(total_params=6e8, active_params=1.0001e8, tpp=200.0, density=0.125, d_model=512,
                                     top_k=2)}
    fig = plot_cross_model(rows, params, "total_params", "majority", [1, 4, 8])
    assert len(fig.axes[0].get_lines()) == 3  # one (d_model, top_k) family x three budgets, active counts aside
    params["my-local-model"]["top_k"] = 4
    assert len(plot_cross_model(rows, params, "tpp", "pass", [1, 4]).axes[0].get_lines()) == 4
    params_csv = tmp / "params.csv"
    params_csv.write_text("model,total_params,active_params\nmy-local-model,6e8,1.2e8\n")  # no family: own line
    pdf = tmp / "cross.pdf"
    points_csv = tmp / "points.csv"
    plot_cli.run(cli_args(plot_cli, [str(out), "--out", str(pdf), "--cross-model", "--params-csv", str(params_csv),
                                     "--k", "4", "--data-out", str(points_csv)]))
    assert pdf.stat().st_size > 1000
    points = list(csv.DictReader(points_csv.open()))
    assert {p["line"] for p in points} == {"d512 top-2, k=4", "my-local-model, k=4"}
    with pytest.raises(UserError, match="my-local-model.*--params-csv"):
        plot_cli.run(cli_args(plot_cli, [str(out), "--out", str(pdf), "--cross-model"]))


def test_cross_model_lines_are_d_model_top_k_families(tmp_path):
    """The issue's grid: exact active counts differ inside a family (router D x E), top-k alone joins d512 and d1024."""
    models = ["d512-E8-k2", "d512-E16-k2", "d512-E32-k2", "d512-E8-k8", "d1024-E8-k2", "d1024-E16-k2"]
    metrics = tmp_path / "metrics.csv"
    with metrics.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for i, model in enumerate(models):
            for k in (1, 4):
                writer.writerow(dict(model=model, strategy="majority", k=k, accuracy=0.1 * i + 0.01 * k, ci_low=0.0,
                                     ci_high=1.0, num_problems=10, mean_tokens=10.0, flops=1.0, estimator="exact"))
    points_csv = tmp_path / "points.csv"
    assert plot_cli.run(cli_args(plot_cli, [str(metrics), "--out", str(tmp_path / "cross.png"), "--cross-model",
                                            "--k", "4", "--data-out", str(points_csv)])) == 0
    points = list(csv.DictReader(points_csv.open()))
    assert list(points[0]) == ["model", "line", "x", "accuracy", "ci_low", "ci_high"]
    lines: dict[str, list[str]] = {}
    for p in points:
        lines.setdefault(p["line"], []).append(p["model"])
    assert {line: sorted(ms) for line, ms in lines.items()} == {
        "d512 top-2, k=4": ["d512-E16-k2", "d512-E32-k2", "d512-E8-k2"], "d512 top-8, k=4": ["d512-E8-k8"],
        "d1024 top-2, k=4": ["d1024-E16-k2", "d1024-E8-k2"]}
    from checkpoints_index.index import resolve

    assert all(float(p["x"]) == resolve(p["model"]).total_params for p in points)
    fig = plot_cross_model(read_metrics(metrics), model_params(models),
                           ks=[4])
    assert sorted(len(line.get_xdata()) for line in fig.axes[0].get_lines()) == [1, 2, 3]


@pytest.mark.slow
def test_plots_keep_a_backend_already_chosen(tmp_path):
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); from inference.ttc.plots import pyplot; pyplot(); "
            "print(matplotlib.get_backend())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={
        "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"
    unchosen = subprocess.run([sys.executable, "-c", code.replace("matplotlib.use('svg'); ", "")], capture_output=True,
                              text=True, env={"PATH": "/usr/bin:/bin",
                                              "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert unchosen.stdout.strip().lower() == "agg", unchosen.stderr  # headless and nothing chosen: Agg


def test_cross_model_plot_with_two_runs(metrics):
    _, _, out = metrics
    rows = read_metrics(out)
    runs = [{**r, "run": "before GRPO"} for r in rows] + [{**r, "run": "after GRPO"} for r in rows]
    params = {"d512-E8-k2": dict(total_params=3e8, active_params=1.01e8, top_k=2.0, d_model=512.0),
              "my-local-model": dict(total_params=6e8, active_params=1.02e8, top_k=2.0, d_model=512.0)}
    fig = plot_cross_model(runs, params, "total_params", "majority", [1, 4], style_by="run")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 * 2 and all(len(line.get_xdata()) == 2 for line in lines)  # one family, both models
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-", "--"]
    assert fig.axes[0].get_legend_handles_labels()[1][0] == "d512 top-2, k=1, before GRPO"
    assert len(plot_cross_model(rows, params, "total_params", "majority", [1, 4]).axes[0].get_lines()) == 2


def test_parquet_shards_without_model_fall_back_to_mean_logprob(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = tmp_path / "store"
    shards.mkdir()
    for shard, problems in enumerate((["p0", "p1"], ["p2"])):
        rows = [{"problem_id": p, "sample_idx": i, "answer": ["7", "8", None, "7"][i], "correct": i in (0, 3),
                 "mean_logprob": [-0.1, -2.0, -0.05, -0.3][i]} for p in problems for i in range(4)]
        pq.write_table(pa.Table.from_pylist(rows), shards / f"part-{shard}.parquet")
    rows = aggregate_samples(shards, [1, 4], bootstrap=0)
    by_key = {(r["strategy"], r["k"]): r for r in rows}
    assert {r["model"] for r in rows} == {"model"} and rows[0]["num_problems"] == 3
    assert by_key["best_of_n", 4]["accuracy"] == 1.0  # -0.05 has no answer; -0.1 ("7", correct) wins
    assert by_key["majority", 4]["accuracy"] == 1.0 and by_key["pass", 1]["accuracy"] == pytest.approx(0.5)
    assert math.isnan(by_key["pass", 1]["ci_low"]) and math.isnan(by_key["pass", 1]["mean_tokens"])
    with pytest.raises(UserError, match="no score column 'reward'"):
        aggregate_samples(shards, score_column="reward")
