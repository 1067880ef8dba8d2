"""Recipes: merge order, overrides, and one-line errors naming the key (never a traceback)."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import MISSING, config_field, describe_fields, load_config, save_resolved_config
from core.errors import UserError
from moelab.recipes import RECIPES, load_recipe, schema_for

REPO = Path(__file__).resolve().parents[1]
# configs/lm_eval_tasks/ holds lm-eval task definitions (`moelab eval`'s task folder), not recipes
SHIPPED_RECIPES = sorted(p for p in (REPO / "configs").rglob("*.yaml")
                         if "deepspeed" not in p.parts and "lm_eval_tasks" not in p.parts)


@dataclasses.dataclass
class Sampling:
    n: int = config_field(4, "samples per problem")
    temperature: float = config_field(0.8, "sampling temperature")


@dataclasses.dataclass
class JobConfig:
    kind: str = config_field("unit_test_job", "recipe type")
    model: str = config_field(MISSING, "index name or path")
    data_file: str | None = config_field(None, "a file that must exist", must_exist=True)
    sampling: Sampling = config_field(Sampling, "sampling settings")
    extra: dict = config_field({}, "free-form kwargs")


def _write(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_merge_yaml_then_overrides(tmp_path):
    path = _write(tmp_path, "kind: unit_test_job\nmodel: toy\nsampling:\n  n: 8\n")
    cfg = load_config(path, ["sampling.temperature=0.5", "extra.anything=3"], schema=JobConfig)
    assert (cfg.model, cfg.sampling.n, cfg.sampling.temperature, cfg.extra.anything) == ("toy", 8, 0.5, 3)
    saved = save_resolved_config(cfg, tmp_path / "run")
    assert load_config(saved, None, schema=JobConfig).sampling.n == 8


def test_unknown_override_names_the_full_key(tmp_path):
    path = _write(tmp_path, "kind: unit_test_job\nmodel: toy\n")
    with pytest.raises(UserError, match=r"'no\.such\.key'"):
        load_config(path, ["no.such.key=1"], schema=JobConfig)
    with pytest.raises(UserError, match=r"'sampling\.bogus'.*keys under sampling: n, temperature"):
        load_config(path, ["sampling.bogus=1"], schema=JobConfig)


def test_unknown_key_in_yaml_names_key_and_file(tmp_path):
    path = _write(tmp_path, "kind: unit_test_job\nmodel: toy\nsampling:\n  bogus: 2\n")
    with pytest.raises(UserError, match=rf"{path}.*sampling\.bogus"):
        load_config(path, None, schema=JobConfig)


def test_wrong_type_names_field_and_expected_type(tmp_path):
    path = _write(tmp_path, "kind: unit_test_job\nmodel: toy\n")
    with pytest.raises(UserError, match=r"sampling\.n.*abc.*Integer"):
        load_config(path, ["sampling.n=abc"], schema=JobConfig)


def test_missing_required_value(tmp_path):
    path = _write(tmp_path, "kind: unit_test_job\n")
    with pytest.raises(UserError, match=r"'model' is required"):
        load_config(path, None, schema=JobConfig)


def test_missing_file_and_bad_yaml(tmp_path):
    path = _write(tmp_path, "kind: unit_test_job\nmodel: toy\ndata_file: /nonexistent/x.jsonl\n")
    with pytest.raises(UserError, match=r"data_file.*not found"):
        load_config(path, None, schema=JobConfig)
    with pytest.raises(UserError, match="recipe file not found"):
        load_config(tmp_path / "missing.yaml", None, schema=JobConfig)
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(_write(tmp_path, "kind: [unclosed\n"), None, schema=JobConfig)
    with pytest.raises(UserError, match="kind is 'nope', expected a 'unit_test_job' recipe"):
        load_config(_write(tmp_path, "kind: nope\n"), None, schema=JobConfig)
    with pytest.raises(UserError, match="'kind' must name a recipe type"):
        load_recipe(_write(tmp_path, "kind: nope\n"))


def test_shipped_recipes_exist():
    assert SHIPPED_RECIPES, "configs/ holds no recipes"


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED_RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_recipe_validates_and_rejects_bad_keys(path):
    cfg = load_recipe(path)
    assert cfg.kind
    cli = [sys.executable, "-m", "moelab.cli", "config", "show", str(path)]
    bad = subprocess.run([*cli, "no.such.key=1"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1 and "no.such.key" in bad.stderr and "Traceback" not in bad.stderr
    int_keys = [key for key, type_name, _ in describe_fields(schema_for(cfg.kind)) if type_name == "int"]
    if int_keys:
        bad = subprocess.run([*cli, f"{int_keys[0]}=abc"], capture_output=True, text=True, cwd=REPO)
        assert bad.returncode != 0 and bad.stderr.count("\n") == 1
        assert int_keys[0] in bad.stderr and "Integer" in bad.stderr


def test_the_recipe_table_names_every_schema_and_each_schema_its_kind():
    for kind in RECIPES:
        assert schema_for(kind).kind == kind


@pytest.mark.parametrize("command", [
    ["grpo", "configs/grpo/toy.yaml", "grpo.learning_rate=-1"],
    ["grpo", "configs/grpo/toy.yaml", "grpo.num_generations=0"],
    ["eval", "configs/eval/toy.yaml", "limit=-5"],
    ["taskloss", "configs/taskloss/toy.yaml", "limit=0"],
    ["sweep", "configs/sweep/toy.yaml", "sampling.num_samples=0"],
])
def test_bad_values_stop_before_anything_loads(command, capsys):
    """Issue #23: values that used to fail after the model loaded (the optimizer's ValueError, a
    ZeroDivisionError, lm-eval's ValueError) stop at the recipe, with one line naming the key."""
    from moelab.cli import main

    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    key = command[-1].split("=")[0]
    assert len(err.splitlines()) == 1 and f"'{key}'" in err and ("at least" in err or "greater than" in err), err
