"""Reward-model adapters offline: ArmoRM-style custom code, Skywork's sigmoid, the fresh-head refusal."""

from __future__ import annotations

import json
import math

import pytest

from core.errors import UserError


@pytest.fixture(scope="module")
def tiny_armo(tmp_path_factory):
    """A local custom-code reward model (auto_map in config.json, `output.score`), with the lab's byte-level
    tokenizer: the stand-in `moelab rehearse` puts in ArmoRM's place."""
    import shutil

    from moelab.rehearse_standins import standin_reward_model

    out = tmp_path_factory.mktemp("reward-models") / "tiny-ArmoRM"  # the name tells the adapter, as on the hub
    shutil.copytree(standin_reward_model("armo", out.parent), out)
    return str(out)


@pytest.fixture(scope="module")
def tiny_plain(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    from checkpoints_index.loading import byte_level_tokenizer

    config = LlamaConfig(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=2,
                         bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    dirs = {}
    for name, cls in [("Skywork-tiny", LlamaForSequenceClassification), ("plain-tiny", LlamaForSequenceClassification),
                      ("causal-lm-tiny", LlamaForCausalLM)]:
        out = tmp_path_factory.mktemp(name)
        cls(config).save_pretrained(out)
        byte_level_tokenizer().save_pretrained(out)
        dirs[name] = str(out)
    return dirs


QUESTIONS = ["What is 2+3?", "What is 10-4?"]
COMPLETIONS = ["2+3=5. The answer is 5.", "It is 6."]


def test_armo_adapter_uses_trust_remote_code_and_reads_output_score(tiny_armo):
    import torch

    from inference.generation.reward_model import load_reward_model, reward_model_kind, score_with_reward_model

    assert reward_model_kind(tiny_armo) == "armo" and reward_model_kind("RLHFlow/ArmoRM-Llama3-8B-v0.1") == "armo"
    model, tokenizer = load_reward_model(tiny_armo)
    assert type(model).__name__ == "StandinArmoRM"  # the repository's own class, not a Llama with a new head
    scores = score_with_reward_model(model, tokenizer, QUESTIONS, COMPLETIONS, progress=False)
    for question, completion, score in zip(QUESTIONS, COMPLETIONS, scores):
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": completion}]
        ids = tokenizer.apply_chat_template(messages, return_tensors="pt", return_dict=False)
        with torch.no_grad():
            assert score == pytest.approx(float(model(ids).score[0]), abs=1e-6)
    assert scores[0] != scores[1]


def test_custom_code_without_trust_is_refused_in_one_line(tiny_armo):
    from inference.generation.reward_model import load_reward_model

    with pytest.raises(UserError, match="reward_model_kind=armo"):
        load_reward_model(tiny_armo, kind="sequence_classification")


def test_fresh_score_head_is_refused(tiny_plain):
    from inference.generation.reward_model import load_reward_model

    with pytest.raises(UserError, match="freshly initialised"):
        load_reward_model(tiny_plain["causal-lm-tiny"])  # a causal LM has no score head: it would be random
    load_reward_model(tiny_plain["plain-tiny"])  # a real classification head loads


def test_skywork_scores_are_the_sigmoid_of_the_logit(tiny_plain, tmp_path):
    import shutil

    from inference.generation.reward_model import load_reward_model, score_with_reward_model

    skywork = load_reward_model(tiny_plain["Skywork-tiny"])
    plain_dir = shutil.copytree(tiny_plain["Skywork-tiny"], tmp_path / "same-weights")
    plain = load_reward_model(str(plain_dir))
    assert skywork[0].moelab_kind == "skywork" and plain[0].moelab_kind == "sequence_classification"
    sigmoid = score_with_reward_model(*skywork, QUESTIONS, COMPLETIONS, progress=False)
    logits = score_with_reward_model(*plain, QUESTIONS, COMPLETIONS, progress=False)
    assert sigmoid == pytest.approx([1 / (1 + math.exp(-x)) for x in logits], abs=1e-6)


@pytest.mark.slow
def test_weighted_majority_never_lets_negative_scores_invert_the_vote(tmp_path):
    """A,A,A at -1 each and B at -2, A correct: raw sums (-3 < -2) would pick B."""
    import csv
    import subprocess
    import sys

    rows = [{"problem_id": "p", "sample_idx": i, "answer": a, "correct": a == "A", "score": s}
            for i, (a, s) in enumerate([("A", -1.0), ("A", -1.0), ("A", -1.0), ("B", -2.0)])]
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    values = {}
    for how in ("auto", "raw"):
        out = tmp_path / f"{how}.csv"
        subprocess.run([sys.executable, "-m", "moelab.cli", "aggregate", str(samples), "--out", str(out), "--k", "4",
                        "--bootstrap", "0", "--vote-weight", how], check=True, capture_output=True)
        with out.open() as handle:
            values[how] = {(r["strategy"], r["k"]): float(r["accuracy"]) for r in csv.DictReader(handle)}
    assert values["auto"][("weighted_majority", "4")] == 1.0
    assert values["raw"][("weighted_majority", "4")] == 0.0  # the study's sum, on request
    assert values["auto"][("best_of_n", "4")] == values["raw"][("best_of_n", "4")]  # a monotone map: same ranking
