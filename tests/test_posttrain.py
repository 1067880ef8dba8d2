"""`moelab posttrain`: GRPO beside the SFT-on-gold control over seeds, with per-seed and pooled paired changes."""

import csv
import json
from pathlib import Path

import pytest

from core.config import load_config
from core.provenance import sidecar_path
from moelab.posttrain import COLUMNS, run_posttrain
from moelab.posttrain_schema import PosttrainConfig
from rl.report import read_verdicts

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # two 2-step GRPO runs and two 2-step SFT controls
def test_posttrain_pools_seeds_and_pairs_problems(tmp_path, monkeypatch):
    monkeypatch.setenv("MOELAB_REGISTRY", str(tmp_path / "registry.jsonl"))
    cfg = load_config(REPO / "configs/posttrain/toy.yaml", [
        "models=[toy-d64-E4-k2]", "seeds=[0,1]", f"output_dir={tmp_path}", f"results={tmp_path / 'post.csv'}",
        "grpo_overrides=[max_steps=2,eval.steps=0,eval.limit=16,checkpoints.save_steps=100,checkpoints.register=false]",
        "sft_control.steps=2", "sft_control.batch_size=16", "workers=2"], schema=PosttrainConfig)
    rows = list(csv.DictReader(run_posttrain(cfg).open()))
    assert list(rows[0]) == COLUMNS
    assert [(r["method"], r["seed"]) for r in rows] == [("grpo", "0"), ("grpo", "1"), ("grpo", "pooled"),
                                                        ("sft", "0"), ("sft", "1"), ("sft", "pooled")]
    for method in ("grpo", "sft"):
        seeds = [r for r in rows if r["method"] == method and r["seed"] != "pooled"]
        pooled = next(r for r in rows if r["method"] == method and r["seed"] == "pooled")
        mean = sum(float(r["change"]) for r in seeds) / 2
        assert float(pooled["change"]) == pytest.approx(mean)  # the same 16 problems in every run
        assert float(pooled["ci_low"]) <= float(pooled["change"]) <= float(pooled["ci_high"])
        assert float(pooled["seed_t_low"]) <= mean <= float(pooled["seed_t_high"])
        assert {r["before"] for r in seeds} == {seeds[0]["before"]}  # same member, same greedy eval before training
        for r in seeds:
            verdicts = read_verdicts(Path(r["run_dir"]) / "eval_samples.jsonl")["toy"]
            first, last = verdicts[min(verdicts)], verdicts[max(verdicts)]
            assert float(r["change"]) == pytest.approx(sum(last.values()) / 16 - sum(first.values()) / 16)
    grpo_dirs = {r["run_dir"] for r in rows if r["method"] == "grpo" and r["run_dir"]}
    assert len(grpo_dirs) == 2  # one run per seed, not one reused
    timing = json.loads(sidecar_path(tmp_path / "post.csv").read_text())  # the job's own timing beside its table
    assert timing["runs"] == 4 and timing["seconds"] > 0 and timing["command"]
