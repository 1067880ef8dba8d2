"""Hub uploads, offline: huggingface_hub's HfApi.create_repo/create_commit are patched at the boundary and
the test checks what would have been uploaded (files, repo type, privacy) and what the cards say."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from core.config import load_config, save_resolved_config
from core.errors import UserError
from moelab.cli import main
from rl.schema import GRPORecipe

LAB = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub(monkeypatch):
    """Every call that would reach the hub, recorded instead."""
    from huggingface_hub import HfApi

    calls: dict[str, list] = {"repos": [], "commits": []}

    def create_repo(self, repo_id, **kwargs):
        calls["repos"].append({"repo_id": repo_id, **kwargs})

    def create_commit(self, repo_id, operations, **kwargs):
        files = {}
        for op in operations:
            source = op.path_or_fileobj
            files[op.path_in_repo] = source if isinstance(source, bytes) else Path(source).read_bytes()
        calls["commits"].append({"repo_id": repo_id, "files": files, **kwargs})

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    return calls


def finished_run(tmp_path: Path) -> Path:
    """What `rl.train.train` leaves in output_dir, with a stand-in weights file."""
    run = tmp_path / "run"
    overrides = [f"output_dir={run}", "rewards.options={accuracy: {rule: study}}"]
    cfg = load_config(LAB / "configs/grpo/toy.yaml", overrides, schema=GRPORecipe)
    save_resolved_config(cfg, run)
    (run / "final").mkdir()
    (run / "final" / "config.json").write_text("{}")
    (run / "final" / "model.safetensors").write_bytes(b"weights")
    with (run / "eval.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["step", "dataset", "accuracy", "num_problems"], [0, "toy", 0.5, 500],
                                 [80, "toy", 0.56, 500]])
    (run / "summary.json").write_text(json.dumps({"step": 80, "reward_rule": "study", "identity": {
        "base_model": "toy-d64-E8-k2", "base_weights": "weights-abc", "recipe_sha256": "123"}}))
    return run


def test_grpo_run_uploads_model_and_card(tmp_path, hub):
    run = finished_run(tmp_path)
    assert main(["push", str(run), "--repo-id", "me/toy-grpo"]) == 0
    assert hub["repos"] == [{"repo_id": "me/toy-grpo", "repo_type": "model", "private": True, "exist_ok": True}]
    (commit,) = hub["commits"]
    assert commit["repo_type"] == "model"
    assert {"README.md", "config.json", "model.safetensors", "moelab/config.yaml", "moelab/eval.csv",
            "moelab/summary.json"} <= set(commit["files"])
    assert commit["files"]["model.safetensors"] == b"weights"
    card = commit["files"]["README.md"].decode()
    assert "`toy-d64-E8-k2`" in card and "weights-abc" in card            # base model and its weights
    assert "rule: `study`" in card                                         # the reward rule
    assert "| 80 | toy | 0.560 | 500 |" in card                           # the eval table
    assert "```yaml\nkind: grpo" in card                                   # the recipe


def test_sweep_uploads_samples_and_metrics_as_a_dataset(tmp_path, hub):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    pq.write_table(pa.table({"problem_id": ["a", "a"], "sample_idx": [0, 1], "correct": [True, False]}),
                   sweep / "scored.parquet")
    (sweep / "metrics.csv").write_text("model,dataset,setting,strategy,k,accuracy,ci_low,ci_high,num_problems\n"
                                       "toy,toy,T0.8,pass,1,0.5,0.4,0.6,1\n")
    (sweep / "config.yaml").write_text("kind: sweep\n")
    (sweep / "samples" / "m").mkdir(parents=True)
    (sweep / "samples" / "m" / "shard-1.parquet").write_bytes(b"shard")
    assert main(["push", str(sweep), "--repo-id", "me/ttc", "--public"]) == 0
    (commit,) = hub["commits"]
    assert hub["repos"][0]["repo_type"] == "dataset" and hub["repos"][0]["private"] is False
    assert set(commit["files"]) == {"README.md", "scored.parquet", "metrics.csv", "config.yaml"}
    card = commit["files"]["README.md"].decode()
    assert "config_name: metrics" in card and "data_files: scored.parquet" in card
    assert "| toy | toy | T0.8 | pass | 1 | 0.500 [0.400, 0.600] | 1 |" in card
    assert main(["push", str(sweep), "--repo-id", "me/ttc", "--completions"]) == 0
    assert "samples/m/shard-1.parquet" in hub["commits"][1]["files"]


def test_dry_run_uploads_nothing_and_bad_targets_fail_early(tmp_path, hub, capsys):
    run = finished_run(tmp_path)
    assert main(["push", str(run), "--repo-id", "me/x", "--dry-run"]) == 0
    assert hub["commits"] == [] and "model.safetensors" in capsys.readouterr().out
    assert main(["push", str(tmp_path), "--repo-id", "me/x"]) == 2  # neither a run nor a sweep
    from rl.hub import check_push_target

    cfg = load_config(LAB / "configs/grpo/toy.yaml", ["checkpoints.push_to_hub=true"], schema=GRPORecipe)
    with pytest.raises(UserError, match="hub_model_id"):
        check_push_target(cfg)
