"""The toy memorization control and the toy sparsity grid: facts, mixing, the grid job, and the committed grid."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from checkpoints_index.toy.schema import ToyTrainConfig
from checkpoints_index.toy.train import facts_per_batch
from core.config import load_config
from core.errors import UserError
from core.stats import t_interval
from inference.toy.grid import (
    GRID_COLUMNS,
    grid_cells,
    grid_settings,
    measure_member,
    member_recipe,
    rows_in_table,
    run_grid,
    summarize_grid,
    summary_markdown,
)
from inference.toy.schema import ToyGridConfig
from tasks.datasets import load_problems
from tasks.toy_facts import make_facts

ROOT = Path(__file__).parents[1]
GRID_CSV = ROOT / "docs" / "results" / "toy-grid.csv"

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def test_facts_are_deterministic_distinct_and_checkable():
    facts = make_facts(300, seed=4)
    assert facts == make_facts(300, seed=4) and facts != make_facts(300, seed=5)
    assert make_facts(50, seed=4) == facts[:50]  # a smaller world is a prefix of a larger one
    people = {f["question"].rsplit(" of ", 1)[1] for f in facts}
    assert len(people) == 300  # one fact per person: no question has two answers
    for fact in facts:
        assert fact["solution"].endswith(f"\n#### {fact['gold']}") and 1 <= int(fact["gold"]) <= 99
    rows = load_problems("toy_facts", "train", num_problems=20, seed=4)
    assert {r["task"] for r in rows} == {"toy"} and rows[0]["question"] == facts[0]["question"]
    with pytest.raises(UserError, match="only the split 'train'"):
        load_problems("toy_facts", "test")


def test_fact_share_is_checked_and_rounds_to_whole_sequences():
    cfg = load_config(None, ["task.num_facts=10", "task.fact_share=0.25"], schema=ToyTrainConfig)
    assert facts_per_batch(cfg) == 8  # 0.25 x 32
    assert facts_per_batch(load_config(None, ["task.num_facts=0"], schema=ToyTrainConfig)) == 0
    with pytest.raises(UserError, match="fact_share"):
        facts_per_batch(load_config(None, ["task.fact_share=1.0"], schema=ToyTrainConfig))
    with pytest.raises(UserError, match="rounds to no"):
        facts_per_batch(load_config(None, ["task.fact_share=0.01"], schema=ToyTrainConfig))


def test_grid_cells_and_bad_grids():
    grid = load_config(ROOT / "configs" / "toy" / "grid.yaml", [], schema=ToyGridConfig)
    cells = grid_cells(grid)
    assert len(cells) == len(grid.regimes) * 5 * 3 + 1 and ("20k", 8, 4, 0) in cells and ("20k", 32, 2, 2) in cells
    two = load_config(ROOT / "configs" / "toy" / "grid.yaml", ["regimes=[{name: a, num_train_problems: 10}, "
                                                               "{name: 20k, num_train_problems: 20}]"], schema=ToyGridConfig)
    order = [c[0] for c in grid_cells(two)]
    assert order == ["a"] * 15 + ["20k"] * 16  # regime by regime, each with its extra members
    with pytest.raises(UserError, match="top_k <= E"):
        grid_cells(load_config(None, ["experts=[2]", "top_k=4"], schema=ToyGridConfig))
    with pytest.raises(UserError, match=r"'experts\[0\]' must be at least 2"):  # the recipe's own bound
        load_config(None, ["experts=[1]"], schema=ToyGridConfig)
    with pytest.raises(UserError, match="regime"):
        grid_cells(load_config(None, ["extra_members=[{regime: nope}]"], schema=ToyGridConfig))


def test_t_interval_is_the_student_t_interval_and_the_summary_clips_it():
    mean, low, high = t_interval([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and high - mean == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert math.isnan(t_interval([0.4])[1])
    rows = [{"regime": "r", "num_train_problems": 10, "num_experts": 2, "top_k": 2, "total_params": 1,
             "active_params": 1, "reasoning_accuracy": v, "train_loss": v / 10} for v in (0.1, 0.9, 0.95)]
    cell = summarize_grid(rows)[0]
    assert cell["reasoning_accuracy_high"] == 1.0 and cell["train_loss_low"] == 0.0  # the feasible ranges


def test_cells_are_contrasted_with_the_dense_member_seed_by_seed():
    """Seed luck shared across E cancels in the paired difference: wide cells, a narrow contrast."""
    def row(experts, top_k, seed, reasoning):
        return {"regime": "r", "num_train_problems": 10, "num_experts": experts, "top_k": top_k, "seed": seed,
                "total_params": experts, "active_params": 2, "reasoning_accuracy": reasoning,
                "memorization_accuracy": "", "train_loss": 0.1}
    dense, sparse = [0.5, 0.8, 0.6], [0.45, 0.76, 0.57]
    rows = [row(2, 2, seed, v) for seed, v in enumerate(dense)] + [row(8, 2, seed, v) for seed, v in enumerate(sparse)]
    rows += [row(8, 4, 0, 0.9)]  # one seed: no interval
    summary = {(s["num_experts"], s["top_k"]): s for s in summarize_grid(rows)}
    e2, e8, e8k4 = summary[(2, 2)], summary[(8, 2)], summary[(8, 4)]
    assert e2["reference"] == e8["reference"] == e8k4["reference"] == "E2-k2" and "reasoning_accuracy_vs_ref" not in e2
    assert e8["reasoning_accuracy_vs_ref"] == pytest.approx(-0.04)
    assert t_interval([-0.05, -0.04, -0.03])[1:] == pytest.approx(
        (e8["reasoning_accuracy_vs_ref_low"], e8["reasoning_accuracy_vs_ref_high"]))
    assert e8["reasoning_accuracy_vs_ref_high"] < 0  # the contrast excludes 0 ...
    assert e8["reasoning_accuracy_low"] < e2["reasoning_accuracy"] < e8["reasoning_accuracy_high"]  # the cells overlap
    assert e8["train_loss_vs_ref"] == pytest.approx(0.0) and "memorization_accuracy_vs_ref" not in e8  # no values
    assert "reasoning_accuracy_vs_ref" not in e8k4


@pytest.mark.slow  # trains four 6-step members in two worker processes
def test_the_grid_trains_measures_summarises_and_resumes(tmp_path):
    overrides = ["experts=[2,4]", "seeds=[0,1]", "regimes=[{name: tiny, num_train_problems: 64}]",
                 "train_overrides={optim.steps: 6, optim.warmup_steps: 1, task.num_facts: 16}",
                 "num_test=12", "num_seen=12", f"models_dir={tmp_path / 'models'}",
                 f"results={tmp_path / 'grid.csv'}"]
    grid = load_config(ROOT / "configs" / "toy" / "grid.yaml", overrides + ["extra_members=[]"], schema=ToyGridConfig)
    paths = run_grid(grid)
    rows = list(csv.DictReader(paths["table"].open()))
    assert [r["num_experts"] for r in rows] == ["2", "2", "4", "4"] and list(rows[0]) == GRID_COLUMNS
    assert {r["num_facts"] for r in rows} == {"16"} and {r["num_test"] for r in rows} == {"12"}
    for row in rows:
        for metric in ("reasoning_accuracy", "seen_problem_accuracy", "memorization_accuracy"):
            assert 0.0 <= float(row[metric]) <= 1.0
        assert float(row["reasoning_loss"]) > 0 and float(row["memorization_loss"]) > 0
    assert rows[0]["total_params"] != rows[2]["total_params"]  # E=4 has more experts
    assert rows[0]["active_params"] == rows[0]["total_params"]  # E=2, k=2: dense
    summary = list(csv.DictReader(paths["summary"].open()))
    assert [(s["num_experts"], s["seeds"]) for s in summary] == [("2", "2"), ("4", "2")]
    assert float(summary[0]["train_loss_low"]) <= float(summary[0]["train_loss"]) <= float(summary[0]["train_loss_high"])
    assert paths["figure"].stat().st_size > 0
    timing = json.loads(paths["provenance"].read_text())  # the job's own record: command, commit, its seconds
    assert timing["trained_this_run"] == 4 and timing["seconds"] >= 0 and timing["commit"] and timing["complete"]
    member = tmp_path / "models" / "tiny" / "seed1" / "toy-d64-E4-k2"
    weights = (member / "model.safetensors").stat().st_mtime_ns
    # a lost measurement (its measure.json and the table) is redone from the kept weights, nothing retrained
    (member / "measure.json").unlink()
    paths["table"].unlink()
    run_grid(grid)
    assert (member / "model.safetensors").stat().st_mtime_ns == weights and (member / "measure.json").is_file()
    assert json.loads((member / "measure.json").read_text())["eval_split"] == "test"
    # weights gone (a fresh clone of a committed table): the table's rows stand, nothing trained or measured
    kept = paths["table"].read_text()
    shutil.copytree(tmp_path / "models", tmp_path / "kept-models")
    shutil.rmtree(tmp_path / "models")
    timing = json.loads(run_grid(grid)["provenance"].read_text())
    assert timing["trained_this_run"] == 0 and timing["measured"] == 4 and paths["table"].read_text() == kept
    assert not (tmp_path / "models").exists()
    # ... but only under the same settings: measured on more problems, no row of that table counts
    assert len(rows_in_table(grid, grid_settings(grid))) == 4
    assert rows_in_table(grid, {"tiny": {**grid_settings(grid)["tiny"], "num_test": 13}}) == {}
    assert rows_in_table(grid, grid_settings(load_config(ROOT / "configs" / "toy" / "grid.yaml",
                         [*overrides, "extra_members=[]", "train_overrides={optim.steps: 7}"],
                         schema=ToyGridConfig))) == {}
    shutil.move(tmp_path / "kept-models", tmp_path / "models")
    # a regime's own overrides (a recipe chosen per regime) reach its members, and make other settings
    per_regime = load_config(ROOT / "configs" / "toy" / "grid.yaml",
                             [*overrides, "extra_members=[]", "regimes=[{name: tiny, num_train_problems: 64, "
                                                                 "train_overrides: {optim.weight_decay: 1.0}}]"],
                             schema=ToyGridConfig)
    assert member_recipe(per_regime, per_regime.regimes[0], 2, 2, 0).optim.weight_decay == 1.0
    assert member_recipe(grid, grid.regimes[0], 2, 2, 0).optim.weight_decay == 0.01
    assert rows_in_table(per_regime, grid_settings(per_regime)) == {}
    with pytest.raises(UserError, match="another recipe"):  # its weights in models_dir are not this recipe's
        run_grid(per_regime)
    # measured on the validation split (choosing a recipe): every member measured again, nothing retrained
    validation = load_config(ROOT / "configs" / "toy" / "grid.yaml",
                             [*overrides, "extra_members=[]", "eval_split=validation",
                              f"results={tmp_path / 'v.csv'}"],
                             schema=ToyGridConfig)
    timing = json.loads(run_grid(validation)["provenance"].read_text())
    assert timing["eval_split"] == "validation"
    assert (member / "model.safetensors").stat().st_mtime_ns == weights
    assert json.loads((member / "measure.json").read_text())["eval_split"] == "validation"


def test_members_are_measured_on_the_split_asked_for():
    from inference.toy.grid import member_data

    recipe = load_config(ROOT / "configs" / "toy" / "train.yaml", ["task.num_facts=4"], schema=ToyTrainConfig)
    held_out = {split: member_data(recipe, 20, 5, split)["test"] for split in ("validation", "test")}
    assert all(r["id"].startswith("toy-validation-") for r in held_out["validation"])
    assert all(r["id"].startswith("toy-test-") for r in held_out["test"])
    assert not {r["question"] for r in held_out["validation"]} & {r["question"] for r in held_out["test"]}


# --- the committed grid --------------------------------------------------------------------------

def _committed_rows() -> list[dict]:
    if not GRID_CSV.is_file():
        pytest.fail(f"{GRID_CSV} is missing: run `moelab toy grid configs/toy/grid.yaml results={GRID_CSV}`")
    return list(csv.DictReader(GRID_CSV.open()))


def test_the_committed_grid_is_complete():
    grid = load_config(ROOT / "configs" / "toy" / "grid.yaml", [], schema=ToyGridConfig)
    rows = _committed_rows()
    cells = {(r["regime"], int(r["num_experts"]), int(r["top_k"]), int(r["seed"])) for r in rows}
    assert cells == set(grid_cells(grid))
    for row in rows:
        assert all(row[c] != "" for c in GRID_COLUMNS), row["member"]
    summary = summarize_grid(rows)
    assert min(s["seeds"] for s in summary if s["top_k"] == grid.top_k) >= 3


def test_the_readmes_show_the_committed_grid():
    summary = (ROOT / "docs" / "results" / "toy-grid-summary.md").read_text()
    assert summary.strip() in (ROOT / "checkpoints_index" / "toy" / "README.md").read_text()
    assert "](results/toy-grid.png)" in (ROOT / "docs" / "deficit.md").read_text()  # the README links the page
    assert "(docs/deficit.md" in (ROOT / "README.md").read_text()
    rows = _committed_rows()
    assert summary == summary_markdown(summarize_grid(rows))  # the table is the CSV's, not edited by hand


@pytest.mark.slow  # greedy decoding of 1,500 prompts
def test_a_committed_member_reproduces_its_grid_row():
    """The shipped E8-k2 is the grid's 20k / seed 0 member: measured again, it gives its row within a point."""
    member = ROOT / "checkpoints_index" / "toy" / "models" / "toy-d64-E8-k2"
    row = next(r for r in _committed_rows() if r["regime"] == "20k" and r["seed"] == "0"
               and r["member"] == member.name)
    recipe = OmegaConf.load(member / "recipe.yaml")
    assert recipe.task.num_train_problems == int(row["num_train_problems"]) and recipe.seed == 0
    measured = measure_member(member, recipe, num_test=int(row["num_test"]), num_seen=int(row["num_seen"]))
    for metric in ("reasoning_accuracy", "seen_problem_accuracy", "memorization_accuracy"):
        assert abs(measured[metric] - float(row[metric])) <= 0.01, metric
    assert measured["reasoning_loss"] == pytest.approx(float(row["reasoning_loss"]), rel=0.02)
    assert json.loads((member / "training.json").read_text())["final_train_loss"] == pytest.approx(
        float(row["train_loss"]))
