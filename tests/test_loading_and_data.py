"""Loading by name or path, the random-init stand-in, datasets and the study's prompt formats."""

import json

import pytest
import torch

from checkpoints_index.index import resolve
from checkpoints_index.loading import byte_level_tokenizer, load_checkpoint, materialize_random, model_source
from core.errors import UserError
from tasks.datasets import (  # final_boxed re-exported
    DATASETS,
    checker_task,
    final_boxed,
    gsm8k_final_answer,
    load_problems,
)
from tasks.prompts import STUDY_STOP_STRINGS, chat_prompt, format_prompt, sample_shots


@pytest.fixture(scope="module")
def tiny_d512(tmp_path_factory):
    """d512-E8-k2 at its real width, vocabulary and expert count, 2 layers instead of 16."""
    return materialize_random("d512-E8-k2", tmp_path_factory.mktemp("d512") / "model", layers=2, dtype="float32")


@pytest.mark.slow
def test_materialized_model_has_the_index_architecture(tiny_d512):
    config = json.loads((tiny_d512 / "config.json").read_text())
    assert (config["hidden_size"], config["num_local_experts"], config["num_experts_per_tok"]) == (512, 8, 2)
    assert (config["vocab_size"], config["num_attention_heads"], config["intermediate_size"]) == (99584, 4, 1024)
    info = resolve(str(tiny_d512))
    model, tokenizer = load_checkpoint(str(tiny_d512), output_router_logits=True)
    assert sum(p.numel() for p in model.parameters()) == info.total_params
    batch = tokenizer(["Question: 1+1?\nAnswer:"], return_tensors="pt")
    out = model(**batch, labels=batch["input_ids"])
    assert out.aux_loss is not None and torch.isfinite(out.loss)
    generated = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == batch["input_ids"].shape[1] + 5


@pytest.mark.slow
def test_full_depth_d512_loads_and_generates(tmp_path):
    out = materialize_random("d512-E8-k2", tmp_path / "full", dtype="bfloat16")
    model, tokenizer = load_checkpoint(str(out), dtype="bfloat16")
    assert sum(p.numel() for p in model.parameters()) == 320_160_256
    batch = tokenizer(["Question: 2+2?\nAnswer:"], return_tensors="pt")
    assert model.generate(**batch, max_new_tokens=3, do_sample=False).shape[1] == batch["input_ids"].shape[1] + 3


def test_hub_name_offline_error_says_how_to_pass_a_local_path():
    assert model_source("d512-E8-k2") == "llm-jp/optimal-sparsity-math-d512-E8-k2-320M-A170M"
    with pytest.raises(UserError, match="local-dir DIR.*materialize"):
        load_checkpoint("d512-E8-k2")


def test_byte_level_tokenizer_round_trips_any_text():
    tok = byte_level_tokenizer()
    text = "Question: 3½ × 4 = ?\nAnswer: 14 #### 14"
    ids = tok(text)["input_ids"]
    assert ids[0] == 1 and max(ids) < 259
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_gsm8k_is_shipped_and_parsed():
    test, train = load_problems("gsm8k", "test"), load_problems("gsm8k", "train")
    assert (len(test), len(train)) == (1319, 7473)
    assert test[0]["gold"] == "18" and test[0]["solution"].endswith("#### 18") and test[0]["task"] == "gsm8k"
    assert all(row["gold"].lstrip("-").replace(".", "").isdigit() for row in test)
    shuffled = load_problems("gsm8k", "test", limit=5, shuffle_seed=0)
    assert shuffled == load_problems("gsm8k", "test", limit=5, shuffle_seed=0) and shuffled != test[:5]


def test_local_jsonl_and_errors(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"problem": "What is $1+1$?", "solution": "So \\\\boxed{2}.", "task": "math500"}\n'
                    '{"question": "q", "answer": "#### 1,234", "task": "gsm8k"}\n')
    rows = load_problems(str(path))
    assert [(r["gold"], r["task"]) for r in rows] == [("2", "math"), ("1234", "gsm8k")]  # a dataset name -> its task
    assert {r["task"] for r in load_problems(str(path), task="toy")} == {"toy"}  # the loader's task overrides
    path.write_text('{"question": "q", "answer": "#### 1"}\n')
    with pytest.raises(UserError, match=r"mine.jsonl:1: .*Add \"task\".*data.task"):
        load_problems(str(path))  # no task anywhere: the error names both fixes
    assert load_problems(str(path), task="gsm_plus")[0]["task"] == "gsm8k"
    path.write_text('{"question": "q", "answer": "#### 1", "task": "chess"}\n')
    with pytest.raises(UserError, match=r"mine.jsonl:1: 'task': unknown checker task 'chess'"):
        load_problems(str(path))
    path.write_text('{"question": "q"}\n')
    with pytest.raises(UserError, match=r"mine.jsonl:1: .*'answer'"):
        load_problems(str(path))
    with pytest.raises(UserError, match="unknown dataset"):
        load_problems("gsm9k")


def test_one_table_names_each_datasets_checker_task():
    from rewards.extract import TASKS, resolve_task

    assert all(d.task in TASKS for d in DATASETS.values())
    assert {name: d.task for name, d in DATASETS.items()} == {
        "gsm8k": "gsm8k", "gsm8k-hub": "gsm8k", "toy": "toy", "toy_facts": "toy", "math": "math", "math500": "math", "math500-hub": "math",
        "minerva_math": "math", "gsm_plus": "gsm8k", "gsm-plus": "gsm8k", "humaneval": "code"}
    assert [checker_task(t) for t in TASKS] == list(TASKS)
    with pytest.raises(ValueError, match="checker task 'math500'.*tasks.datasets"):
        resolve_task("math500")  # rewards knows checker tasks only; the dataset name is mapped here
    assert {r["task"] for r in load_problems("toy", "test", num_problems=5)} == {"toy"}
    assert {r["task"] for r in load_problems("gsm8k", "test", limit=5, task="math")} == {"math"}  # data.task
    with pytest.raises(UserError, match="gsm_plus.*no loader.*JSONL"):
        load_problems("gsm_plus")


def test_answer_helpers():
    assert gsm8k_final_answer("so 3 + 4 = 7\n#### 1,000") == "1000"
    assert final_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert final_boxed(r"so $x = \boxed{1}$ or $x = \boxed{-2}$.") == "1, -2"  # a MATH gold of two boxes
    assert final_boxed("no box") is None


def test_study_prompt_formats():
    assert format_prompt("What is 2+2?") == "Question: What is 2+2?\nAnswer:"
    shots = sample_shots(load_problems("gsm8k", "train"), 2, seed=0)
    assert shots == sample_shots(load_problems("gsm8k", "train"), 2, seed=0)
    prompt = format_prompt("Q?", shots=shots)
    assert prompt.count("Question: ") == 3 and prompt.endswith("Question: Q?\nAnswer:")
    assert prompt.startswith(f"Question: {shots[0]['question']}\nAnswer: {shots[0]['solution']}\n\n")
    assert STUDY_STOP_STRINGS == ["Question:", "Q:"]


def test_chat_prompt_falls_back_to_the_qa_format():
    tok = byte_level_tokenizer()
    tok.chat_template = None
    assert chat_prompt("What is 2+2?", tok) == "Question: What is 2+2?\nAnswer:"
