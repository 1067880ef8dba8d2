"""Trackers: a sweep's metrics table and a GRPO run's scalars (greedy eval accuracy, moe/*, TRL's reward
statistics) reach tensorboard; the event files are read back offline with tensorboard's own reader."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from core.errors import UserError
from inference.jobs.trackers import log_metrics_table

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

LAB = Path(__file__).resolve().parents[1]


def scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> step -> value over every event file under log_dir."""
    found: dict[str, dict[int, float]] = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, {}).update({e.step: e.value for e in accumulator.Scalars(tag)})
    return found


def test_metrics_table_becomes_accuracy_vs_k_curves(tmp_path):
    rows = [{"model": "toy-E8", "dataset": "toy", "setting": "T0.8", "strategy": s, "k": k, "accuracy": a}
            for s, k, a in [("pass", 1, 0.5), ("pass", 4, 0.75), ("majority", 1, 0.5), ("majority", 4, 0.625)]]
    assert log_metrics_table(rows, ["tensorboard"], run_name="sweep-a", logging_dir=tmp_path) == ["tensorboard"]
    found = scalars(tmp_path / "sweep-a")
    assert found["toy-E8/toy/T0.8/pass/accuracy"] == {1: 0.5, 4: 0.75}
    assert found["toy-E8/toy/T0.8/majority/accuracy"][4] == pytest.approx(0.625)
    with pytest.raises(UserError, match="unknown tracker"):
        log_metrics_table(rows, ["tensorbored"], run_name="x", logging_dir=tmp_path)


def test_a_sweep_sends_its_metrics_table_to_the_recipes_trackers(tmp_path):
    """`report_to` of a sweep recipe: the aggregate stage's metrics.csv reaches tensorboard, curve by curve."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.config import load_config
    from inference.sweep.run import aggregate_and_plot
    from inference.sweep.schema import SweepConfig
    from inference.ttc.aggregate import read_metrics

    rows = [{"model": "m", "dataset": "toy", "setting": "T0.8", "problem_id": f"q{p}", "sample_idx": i,
             "answer": str(i % 3), "correct": (i + p) % 3 == 0, "score": 0.5} for p in range(3) for i in range(8)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "scored.parquet")
    cfg = load_config(LAB / "configs" / "sweep" / "toy.yaml",
                      ["report_to=[tensorboard]", "run_name=tracked", "sampling.num_samples=8",
                       "aggregate.strategies=[pass,majority]", "aggregate.bootstrap=0"], schema=SweepConfig)
    metrics = aggregate_and_plot(tmp_path / "scored.parquet", tmp_path / "tracked", cfg, ["aggregate"])["metrics"]
    found = scalars(tmp_path / "tracked" / "runs" / "tracked")
    table = [r for r in read_metrics(metrics) if r["strategy"] == "pass"]
    assert table and found["m/toy/T0.8/pass/accuracy"] == pytest.approx({r["k"]: r["accuracy"] for r in table})
    assert json.dumps(sorted(found)) == json.dumps(sorted({f"m/toy/T0.8/{s}/accuracy" for s in ("pass", "majority")}))
    with pytest.raises(UserError, match="report_to"):
        load_config(LAB / "configs" / "sweep" / "toy.yaml", ["report_to=[tensorbored]"], schema=SweepConfig)


@pytest.mark.slow
def test_toy_grpo_run_sends_eval_accuracy_moe_and_reward_to_tensorboard(tmp_path, monkeypatch, capsys):
    from rl.cli import run

    monkeypatch.setenv("MOELAB_REGISTRY", str(tmp_path / "registry.jsonl"))
    out = tmp_path / "run"
    overrides = [f"output_dir={out}", "max_steps=2", "grpo.per_device_train_batch_size=16",
                 "grpo.max_completion_length=24", "eval.limit=8", "eval.max_new_tokens=24", "eval.steps=0",
                 "moe.log_expert_load_steps=1", "checkpoints.save_steps=10", "checkpoints.register=false",
                 "grpo.report_to=[tensorboard]", "grpo.run_name=toy-tb"]
    assert run(argparse.Namespace(recipe=str(LAB / "configs/grpo/toy.yaml"), overrides=overrides)) == 0
    found = scalars(out)
    assert set(found["eval/toy/accuracy"]) == {0, 2}, sorted(found)  # before and after training
    assert 0.0 <= found["eval/toy/accuracy"][2] <= 1.0
    assert {"train/reward", "train/reward_std"} <= set(found)
    assert set(found["train/reward"]) == {1, 2}  # the eval logged at step 2 did not swallow that step's own log
    assert any(tag.startswith("train/moe/") for tag in found)
    assert (out / "final" / "README.md").read_text().count("| 2 | toy |") == 1  # the model card's eval table
    printed = capsys.readouterr().out
    assert "[grpo] step 2/2" in printed and "ETA" in printed  # no terminal: plain progress lines
