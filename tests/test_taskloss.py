"""`moelab taskloss`: the study's GSM8K set rebuilt exactly, the NLL by hand from logits, vLLM = HF, resume,
and the study preset end to end on a random-init d512-E8-k2 (no hub)."""

import csv
import hashlib
import json
import math

import pytest

from inference.instruments.taskloss import TASKLOSS_COLUMNS, HFTaskLoss, summarize
from moelab.cli import main
from tasks.taskloss_sets import gsm8k_set, load_taskloss_set

TOY = "toy-d64-E8-k2"
# sha256 of json.dumps(pairs, ensure_ascii=False) of the authors' taskloss-eval/datasets/lm-evaluation-harness/
# gsm8k_4shot.json (rioyokotalab/optimal-sparsity, blob 82ec43d0): the set the study's task loss was measured on.
AUTHORS_GSM8K_4SHOT = "6947bf74549db65cfc11481bf0debf0d5a6f22b0b3547a330bc6c89a2b241a67"


def test_gsm8k_set_is_the_authors_file_byte_for_byte():
    pairs = gsm8k_set()
    assert len(pairs) == 1319
    assert hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest() == AUTHORS_GSM8K_4SHOT
    first = pairs[0]
    assert first["prompt"].count("Question: ") == 5 and first["prompt"].endswith("\nAnswer:")
    assert first["answer"].startswith("Janet sells") and first["answer"].endswith("#### 18")  # no leading space


def test_named_sets_and_jsonl(tmp_path):
    name, toy = load_taskloss_set("toy")
    assert name == "toy" and len(toy) == 1000 and toy[0]["prompt"].startswith("Question: ")
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "Q: 1+1\\nA:", "answer": " 2"}\n')
    assert load_taskloss_set(str(path)) == ("mine", [{"prompt": "Q: 1+1\nA:", "answer": " 2"}])


@pytest.mark.slow
def test_one_examples_nll_recomputed_by_hand_from_the_logits():
    """The batched, left-padded HF scorer against a plain forward pass and log-softmax of one example."""
    import torch

    from checkpoints_index.loading import load_checkpoint

    model, tokenizer = load_checkpoint(TOY)
    examples = load_taskloss_set("toy")[1][:5]
    losses = HFTaskLoss(model_and_tokenizer=(model, tokenizer), batch_size=5).score(examples)
    e = examples[3]
    full = tokenizer.encode(e["prompt"] + e["answer"], add_special_tokens=True)
    q = len(tokenizer.encode(e["prompt"], add_special_tokens=True))
    with torch.inference_mode():
        logits = model(torch.tensor([full])).logits[0]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    by_hand = -sum(float(logprobs[i - 1, full[i]]) for i in range(q, len(full)))
    assert losses[3].answer_tokens == len(full) - q
    assert losses[3].nll_nats == pytest.approx(by_hand, abs=1e-4)
    assert losses[3].bits_per_token == pytest.approx(by_hand / math.log(2) / (len(full) - q), abs=1e-5)
    assert losses[3].bits_per_byte == pytest.approx(by_hand / math.log(2) / len(e["answer"].encode()), abs=1e-5)
    row = summarize(TOY, "toy", losses)
    assert row["bits_per_token"] == pytest.approx(sum(x.bits_per_token for x in losses) / 5)
    assert list(row) == TASKLOSS_COLUMNS


def _taskloss(tmp_path, *overrides):
    out = tmp_path / "out"
    assert main(["taskloss", "configs/taskloss/toy.yaml", f"output_dir={out}", *overrides]) == 0
    with open(out / "taskloss.csv") as f:
        return out, list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_vllm_and_hf_agree_within_1e3_bits_per_token_and_runs_resume(tmp_path):
    _, vllm_rows = _taskloss(tmp_path / "v", f"models=[{TOY}]", "limit=40", "chunk_size=16")
    out, hf_rows = _taskloss(tmp_path / "h", f"models=[{TOY}]", "limit=24", "backend.type=hf")
    assert hf_rows[0]["num_examples"] == "24"
    _, hf_rows = _taskloss(tmp_path / "h", f"models=[{TOY}]", "limit=40", "backend.type=hf")  # resumes: 24 -> 40
    lines = (out / TOY / "toy" / "examples.jsonl").read_text().splitlines()
    assert [json.loads(x)["index"] for x in lines] == list(range(40))
    assert list(vllm_rows[0]) == TASKLOSS_COLUMNS
    assert vllm_rows[0]["num_examples"] == hf_rows[0]["num_examples"] == "40"
    for column in ("bits_per_token", "bits_per_token_weighted"):
        assert abs(float(vllm_rows[0][column]) - float(hf_rows[0][column])) < 1e-3
    assert float(vllm_rows[0]["bits_per_token"]) > 0
    # a folder scored by hf is never silently extended by vllm: one error line, status 2
    assert main(["taskloss", "configs/taskloss/toy.yaml", f"output_dir={out}", f"models=[{TOY}]"]) == 2


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_study_gsm8k_set_end_to_end_on_a_random_d512_E8_k2(tmp_path):
    from checkpoints_index.loading import materialize_random

    model = materialize_random("d512-E8-k2", tmp_path / "d512", layers=2, dtype="float32")
    out = tmp_path / "out"
    assert main(["taskloss", "configs/taskloss/study-gsm8k.yaml", f"models=[{model}]", "limit=2",
                 f"output_dir={out}"]) == 0
    with open(out / "taskloss.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["task"] == "gsm8k-4shot" and row["num_examples"] == "2"
    # a random model over 99,584 tokens: ~log2(V) = 16.6 bits per (byte-level) token
    assert 12 < float(row["bits_per_token"]) < 22
