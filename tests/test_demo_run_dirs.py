"""One run-directory convention (issue #24): every schema says where its job writes (`run_dir(cfg)`) and how to
make it write elsewhere (`placed_in(folder)`); the composite jobs (demo, deficit, posttrain) configure their
sub-jobs by merging a mapping, never by building `key=value` strings. No model runs here."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from core.config import load_config
from moelab.recipes import RECIPES, load_recipe, placed_in, run_dir, schema_for

REPO = Path(__file__).resolve().parents[1]
MODELS = ["toy-d64-E4-k2", "toy-d64-E8-k4"]


@pytest.mark.parametrize("kind", sorted(RECIPES))
@pytest.mark.parametrize("folder", ["outputs/x/run", "/abs/deep/run-1"])
def test_every_kind_reads_back_the_folder_it_was_placed_in(kind, folder):
    schema = schema_for(kind)
    cfg = OmegaConf.merge(OmegaConf.structured(schema), placed_in(kind, folder))
    assert schema.run_dir(cfg) == Path(folder)
    # by `kind`, also on a config re-created from YAML without its dataclass (a worker process's copy)
    assert run_dir(OmegaConf.create(OmegaConf.to_yaml(cfg))) == Path(folder)


@pytest.mark.parametrize("recipe, folder", [
    ("configs/sweep/toy.yaml", "outputs/sweeps/toy"),          # <output_dir>/<run_name>
    ("configs/deficit/toy.yaml", "outputs/deficit/toy"),
    ("configs/demo/toy.yaml", "outputs/demo/toy"),
    ("configs/posttrain/toy.yaml", "outputs/posttrain/toy"),
    ("configs/eval/toy.yaml", "outputs/eval/toy"),             # <output_dir>
    ("configs/taskloss/toy.yaml", "outputs/taskloss/toy"),
    ("configs/grpo/toy.yaml", "outputs/grpo/toy-d64-E8-k2"),
    ("configs/toy/train.yaml", "checkpoints_index/toy/models"),
    ("configs/toy/grid.yaml", "outputs/toy_grid"),             # the folder of `results`, `models_dir` inside it
])
def test_shipped_recipes_run_where_they_always_did(recipe, folder):
    cfg = load_recipe(REPO / recipe)
    assert run_dir(cfg) == Path(folder)
    for key, value in placed_in(cfg.kind, folder).items():  # placing a run where it already is changes nothing
        assert str(cfg[key]) == value, key


def test_the_quick_demo_has_its_own_folder():
    from moelab.demo_schema import DemoConfig

    cfg = load_recipe(REPO / "configs/demo/toy.yaml")
    assert DemoConfig.run_dir(cfg, quick=True) == Path("outputs/demo/toy-quick")


def test_job_values_are_merged_after_the_person_s_overrides_and_validated():
    from core.errors import UserError
    from inference.sweep.schema import SweepConfig

    cfg = load_config(REPO / "configs/sweep/toy.yaml", ["run_name=mine", "sampling.num_samples=3"], schema=SweepConfig,
                      values={"models": MODELS, **placed_in("sweep", "out/before")})
    assert (cfg.output_dir, cfg.run_name, list(cfg.models), cfg.sampling.num_samples) == ("out", "before", MODELS, 3)
    with pytest.raises(UserError, match="no_such_key"):
        load_config(REPO / "configs/sweep/toy.yaml", [], schema=SweepConfig, values={"models": MODELS,
                                                                                     "no_such_key": 1})
    with pytest.raises(UserError, match="num_samples"):
        load_config(REPO / "configs/sweep/toy.yaml", [], schema=SweepConfig,
                    values={"models": MODELS, "sampling": {"num_samples": 0}})


def test_member_grpo_recipe_lives_in_the_job_s_run_directory():
    from moelab.members import member_grpo_recipe

    job_dir = Path("outputs/posttrain/toy/seed1")
    cfg = member_grpo_recipe(str(REPO / "configs/grpo/toy.yaml"), ["max_steps=2", "output_dir=elsewhere"],
                             "/models/my member", job_dir, values={"grpo": {"seed": 1}})
    assert run_dir(cfg) == job_dir / "grpo" / "models_my_member"
    assert (cfg.model.name, cfg.checkpoints.register_name) == ("/models/my member", "models_my_member-grpo-seed1")
    assert (cfg.max_steps, cfg.grpo.seed) == (2, 1)


def _fake_job(table: str, rows: list[dict], seen: list):
    """A sub-job that records its config and writes its table into its run directory, as the real one does."""
    def job(cfg):
        seen.append(cfg)
        folder = run_dir(cfg)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / table).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return {}
    return job


def test_the_deficit_runs_each_instrument_in_its_folder(tmp_path, monkeypatch):
    """<run>/eval, <run>/taskloss/<set> joined into <run>/taskloss/taskloss.csv, <run>/sweep/before, as before."""
    from moelab import deficit
    from moelab.deficit_schema import DeficitConfig

    seen: dict[str, list] = {"eval": [], "taskloss": [], "sweep": []}
    for kind, table in (("eval", "results.csv"), ("taskloss", "taskloss.csv"), ("sweep", "metrics.csv")):
        rows = [{"model": "m", "task": "t", "value": "1"}]
        monkeypatch.setattr(deficit.RUNNERS[kind].job.replace(":", "."), _fake_job(table, rows, seen[kind]))
    cfg = load_config(REPO / "configs/deficit/toy.yaml", [
        f"output_dir={tmp_path}", "run_name=run", "eval.overrides=[limit=3]", "taskloss.datasets=[toy,toy_facts]",
        "sweep.overrides=[sampling.num_samples=4]"], schema=DeficitConfig)
    run = run_dir(cfg)
    assert deficit._instrument("eval", cfg.eval, MODELS, run / "eval") == run / "eval" / "results.csv"
    assert deficit._instrument("taskloss", cfg.taskloss, MODELS, run / "taskloss") == run / "taskloss" / "taskloss.csv"
    assert deficit._instrument("sweep", cfg.sweep, MODELS, run / "sweep" / "before") == run / "sweep" / "before"
    assert [run_dir(c) for c in seen["taskloss"]] == [run / "taskloss" / "toy", run / "taskloss" / "toy_facts"]
    assert [c.dataset for c in seen["taskloss"]] == ["toy", "toy_facts"]
    assert (seen["eval"][0].output_dir, seen["eval"][0].limit) == (str(run / "eval"), 3)
    assert (seen["sweep"][0].output_dir, seen["sweep"][0].run_name) == (str(run / "sweep"), "before")
    assert seen["sweep"][0].sampling.num_samples == 4
    assert all(list(c.models) == MODELS for found in seen.values() for c in found)
    assert len(list(csv.DictReader((run / "taskloss" / "taskloss.csv").open()))) == 2


def test_a_run_made_elsewhere_is_read_from_its_run_directory(tmp_path):
    """`<kind>.output=<run directory>`: the table of an eval/taskloss run, the whole folder of a sweep run."""
    from core.errors import UserError
    from moelab import deficit

    for kind, table in (("eval", "results.csv"), ("taskloss", "taskloss.csv"), ("sweep", "metrics.csv")):
        folder = tmp_path / kind
        folder.mkdir()
        with pytest.raises(UserError, match=f"has no {table}"):
            deficit._collected(kind, folder)
        (folder / table).write_text("model\n")
        assert deficit._collected(kind, folder) == (folder if kind == "sweep" else folder / table)


def test_the_demo_s_deficit_stage_reads_the_demo_s_sweeps(tmp_path, monkeypatch):
    from moelab import deficit, demo

    seen = []
    monkeypatch.setattr(deficit, "run_deficit", seen.append)
    cfg = load_recipe(REPO / "configs/demo/toy.yaml")
    trained = {m: f"{m}-grpo" for m in MODELS}
    folder = demo.run_deficit_stage(cfg, tmp_path, MODELS, trained, tmp_path / "before", tmp_path / "after", False)
    (stage,) = seen
    assert folder == run_dir(stage) == tmp_path / "deficit"
    assert (stage.sweep.output, stage.sweep.recipe) == (str(tmp_path / "before"), None)
    assert (stage.grpo.after_sweep, stage.grpo.recipe, dict(stage.grpo.trained)) == (str(tmp_path / "after"), None,
                                                                                     trained)
    assert list(stage.models) == MODELS


@pytest.mark.parametrize("module", ["moelab/demo.py", "moelab/deficit.py", "moelab/posttrain.py", "moelab/members.py",
                                    "moelab/demo_schema.py", "moelab/deficit_schema.py", "moelab/posttrain_schema.py"])
def test_no_composite_job_builds_key_value_strings(module):
    """What a job sets in its sub-job is a mapping; a string such as f"output_dir={out}" or "sweep.recipe=null" is
    the mechanism issue #24 removed (positional, and re-parsed as YAML)."""
    source = (REPO / module).read_text()
    assert not re.findall(r"""f?["'](?!key=value)[a-z_]+(?:\.[a-z_]+)*=[{a-z0-9\[]""", source)
    assert "overrides[:-1]" not in source
