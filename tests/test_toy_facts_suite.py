"""The toy memorization control in the evaluation suite: the lm-eval task `toy_facts` (loaded as `moelab eval`
loads it, scored by its own filters and metric), the task-loss set `toy_facts`, and the toy deficit recipe
that reads both. Plumbing only: the toy members in the index may predate the facts, so no accuracy is asserted."""

import csv
import json
from pathlib import Path

import pytest

from moelab.recipes import load_recipe
from tasks.taskloss_sets import TASKLOSS_SETS, load_taskloss_set, toy_facts_set
from tasks.toy_facts import make_facts

REPO = Path(__file__).resolve().parents[1]
TOY = "toy-d64-E8-k2"
FACTS = make_facts(200, seed=0)  # what configs/toy/train.yaml (task.num_facts: 200, seed 0) trains on


@pytest.fixture(scope="module")
def facts_task():
    """lm-eval's Task object for `toy_facts`, through the lab's task folder and loader
    (inference.instruments.lm_eval_run)."""
    from lm_eval.tasks import TaskManager

    from inference.instruments.lm_eval_run import LAB_TASKS_DIR, load_task

    manager = TaskManager(include_path=str(LAB_TASKS_DIR))
    assert Path(manager.task_index["toy_facts"].yaml_path).resolve().is_relative_to(LAB_TASKS_DIR)
    return load_task(manager, "toy_facts", load_recipe(REPO / "configs/eval/toy.yaml"))["toy_facts"]


@pytest.mark.slow
def test_lm_eval_task_asks_the_pretraining_facts_as_the_toy_task_asks(facts_task):
    docs = list(facts_task.test_docs())
    assert [d["question"] for d in docs] == [f["question"] for f in FACTS]
    assert [d["solution"] for d in docs] == [f["solution"] for f in FACTS]
    assert facts_task.doc_to_text(docs[0]) == f"Question: {FACTS[0]['question']}\nAnswer:"
    assert facts_task.doc_to_target(docs[0]) == FACTS[0]["solution"]
    config = facts_task.config
    assert config.num_fewshot == 0 and config.generation_kwargs["max_gen_toks"] == 96
    assert config.fewshot_split == config.test_split  # lm-eval then leaves a fact out of its own context
    assert [f["name"] for f in config.filter_list] == ["strict-match", "flexible-extract"]


@pytest.mark.slow
def test_lm_eval_filters_and_metric_score_a_gold_and_a_wrong_answer(facts_task):
    facts_task.build_all_requests(limit=4, rank=0, world_size=1)
    instances = facts_task.instances
    assert len(instances) == 4
    for i, instance in enumerate(instances):  # even: the gold solution; odd: a wrong number
        gold = instance.doc["gold"]
        wrong = str(int(gold) % 99 + 1)
        instance.resps = [instance.doc["solution"] if i % 2 == 0 else f"It is {wrong}.\n#### {wrong}"]
    facts_task.apply_filters()
    for name in ("strict-match", "flexible-extract"):
        scores = [facts_task.process_results(inst.doc, [inst.filtered_resps[name]])["exact_match"]
                  for inst in instances]
        assert scores == [1.0, 0.0, 1.0, 0.0], name


def test_taskloss_set_is_the_200_facts_as_toy_set_builds_its_pairs():
    assert TASKLOSS_SETS["toy_facts"] == 0
    name, pairs = load_taskloss_set("toy_facts")
    assert name == "toy_facts" and pairs == toy_facts_set()
    assert pairs == [{"prompt": f"Question: {f['question']}\nAnswer:", "answer": f["solution"]} for f in FACTS]


def test_taskloss_demonstrations_never_show_the_facts_own_answer():
    for fact, pair in zip(FACTS, toy_facts_set(num_shots=3)):
        assert pair["prompt"].count("Question: ") == 4 and pair["prompt"].endswith(f"{fact['question']}\nAnswer:")
        assert pair["prompt"].count(fact["question"]) == 1


def test_toy_recipes_name_toy_facts_in_every_memorization_slot():
    assert list(load_recipe(REPO / "configs/eval/toy.yaml").tasks) == ["toy", "toy_facts"]
    deficit = load_recipe(REPO / "configs/deficit/toy.yaml")
    assert list(deficit.taskloss.datasets) == ["toy", "toy_facts"]
    assert load_recipe(deficit.taskloss.recipe).kind == "taskloss"
    memo, reasoning = deficit.memorization, deficit.reasoning
    assert (memo.eval_task, memo.loss_task) == ("toy_facts", "toy_facts")
    assert (memo.eval_metric, memo.eval_filter) == (reasoning.eval_metric, reasoning.eval_filter)
    assert load_recipe(REPO / "configs/demo/toy.yaml").deficit_recipe == "configs/deficit/toy.yaml"


def test_config_show_validates_the_deficit_recipe(capsys):
    from moelab.cli import main

    assert main(["config", "show", "configs/deficit/toy.yaml"]) == 0
    assert "toy_facts" in capsys.readouterr().out


@pytest.mark.slow
def test_deficit_job_reads_toy_facts_from_its_own_eval_and_taskloss_runs(tmp_path):
    """The toy deficit recipe's eval and taskloss stages on one member (hf, 4 examples per task), no sweep:
    the memorization rows of deficit.csv come from the toy_facts rows of results.csv and taskloss.csv."""
    from core.config import load_config
    from moelab.deficit import run_deficit
    from moelab.deficit_schema import DeficitConfig

    hf = "backend.type=hf"
    cfg = load_config(REPO / "configs/deficit/toy.yaml", [
        f"models={json.dumps([TOY])}", f"output_dir={tmp_path}", "run_name=run", "sweep.recipe=null",
        "grpo.recipe=null", f'eval.overrides=["limit=4","{hf}","backend.batch_size=4"]',
        f'taskloss.overrides=["limit=4","{hf}"]', "analysis.bootstrap=50"], schema=DeficitConfig)
    run_deficit(cfg)
    run = tmp_path / "run"
    with (run / "eval" / "results.csv").open(newline="") as f:
        assert {r["task"] for r in csv.DictReader(f)} == {"toy", "toy_facts"}
    with (run / "taskloss" / "taskloss.csv").open(newline="") as f:
        losses = {r["task"]: r for r in csv.DictReader(f)}
    assert set(losses) == {"toy", "toy_facts"} and losses["toy_facts"]["num_examples"] == "4"
    with (run / "deficit.csv").open(newline="") as f:
        measures = {r["measure"]: r for r in csv.DictReader(f) if r["model"] == TOY}
    assert float(measures["memorization_loss"]["value"]) == pytest.approx(float(losses["toy_facts"]["bits_per_token"]))
    assert "toy_facts" in measures["memorization_accuracy"]["source"]
    assert 0.0 <= float(measures["memorization_accuracy"]["value"]) <= 1.0
