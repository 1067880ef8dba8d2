"""`moelab sweep`: the plan, resuming, growing N, surviving SIGKILL, and the toy recipe end to end.

Resume tests use the transformers backend on a tiny random Mixtral: its samples are exactly
reproducible one by one, so "identical to an uninterrupted run" is checked bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from core.config import load_config
from core.errors import UserError
from inference.generation.store import SampleStore
from inference.sweep import run as sweep_module
from inference.sweep.run import load_dataset_prompts, plan_samples, run_sweep, settings_from_config
from inference.sweep.schema import SweepConfig

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def problems_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "problems.jsonl"
    rows = [{"id": f"p{i}", "question": f"Sam has {i} pens and buys {i + 2} more. How many pens?",
             "answer": f"{i} + {i + 2} = {2 * i + 2}\n#### {2 * i + 2}"} for i in range(10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def recipe(tmp_path: Path, model: str, problems: str, name: str = "run", **sections) -> Path:
    body = {"kind": "sweep", "run_name": name, "output_dir": str(tmp_path / "sweeps"), "models": [model],
            "stages": ["generate"],
            "data": {"datasets": [problems], "task": "gsm8k", "shuffle_seed": None},
            "sampling": {"temperatures": [0.8], "top_p": 0.95, "num_samples": 4, "max_new_tokens": 12, "seed": 7},
            "backend": {"type": "hf", "chunk_size": 4}}
    for key, value in sections.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def stored(store_root: Path) -> dict[str, tuple]:
    """Every sample under a sweep's store root (one store directory per model)."""
    rows = [r for d in sorted(Path(store_root).iterdir()) for r in SampleStore(d).read().to_pylist()]
    return {r["key"]: (r["problem_id"], r["sample_idx"], r["completion"], r["num_tokens"], r["cumulative_logprob"])
            for r in rows}


def count_requests(monkeypatch) -> list[int]:
    """Record how many samples each backend built by the sweep is asked for."""
    asked: list[int] = []
    real = sweep_module.make_backend

    def counting(kind, model, **options):
        backend = real(kind, model, **options)
        generate = backend.generate

        def wrapped(requests):
            asked.append(len(requests))
            return generate(requests)

        backend.generate = wrapped
        return backend

    monkeypatch.setattr(sweep_module, "make_backend", counting)
    return asked


def test_plan_is_a_pure_function_of_the_recipe(tmp_path, tiny_mixtral, problems_file):
    cfg = load_config(recipe(tmp_path, tiny_mixtral, problems_file), ["sampling.greedy=true"], schema=SweepConfig)
    data = load_dataset_prompts(cfg)[0]
    sampled, greedy = settings_from_config(cfg)
    plan = plan_samples("m", None, data, sampled, seed := 7)
    assert plan == plan_samples("m", None, data, sampled, seed)
    assert len(plan) == 40 and len({p.key for p in plan}) == 40
    assert [p.seed - plan[0].seed for p in plan[:4]] == [0, 1, 2, 3]  # consecutive: vLLM may group them
    assert plan[0].prompt == "Question: Sam has 0 pens and buys 2 more. How many pens?\nAnswer:"
    assert greedy.num_samples == 1 and greedy.sampling.temperature == 0.0 and greedy.label == "greedy"
    other_model = plan_samples("m2", None, data, sampled, seed)
    assert not {p.key for p in plan} & {p.key for p in other_model}


@pytest.mark.slow
def test_rerun_skips_and_raising_n_generates_only_the_new_samples(tmp_path, tiny_mixtral, problems_file,
                                                                  monkeypatch):
    asked = count_requests(monkeypatch)
    path = recipe(tmp_path, tiny_mixtral, problems_file)
    outputs = run_sweep(load_config(path, [], schema=SweepConfig))
    store_dir = outputs["store"]
    assert sum(asked) == 40 and len(stored(store_dir)) == 40
    assert (outputs["out_dir"] / "config.yaml").is_file()

    asked.clear()
    run_sweep(load_config(path, [], schema=SweepConfig))
    assert asked == []  # nothing missing: no backend built, nothing generated

    run_sweep(load_config(path, ["sampling.num_samples=8"], schema=SweepConfig))
    assert sum(asked) == 40  # 4 new samples for each of the 10 problems
    grown = stored(store_dir)
    assert len(grown) == 80
    per_problem = {}
    for problem_id, idx, *_ in grown.values():
        per_problem.setdefault(problem_id, []).append(idx)
    assert all(sorted(v) == list(range(8)) for v in per_problem.values())

    fresh = run_sweep(load_config(path, ["sampling.num_samples=8", "run_name=fresh"], schema=SweepConfig))
    assert stored(fresh["store"]) == grown  # same keys, same completions, tokens and logprobs


@pytest.mark.slow
def test_shards_generate_disjoint_problems_that_merge_into_the_unsharded_run(tmp_path, tiny_mixtral, problems_file,
                                                                             monkeypatch):
    from inference.jobs.shards import parse_shard

    asked = count_requests(monkeypatch)
    path = recipe(tmp_path, tiny_mixtral, problems_file, name="sharded", sampling={"num_samples": 2})
    parts = []
    for i in range(3):  # 10 problems over 3 shards: 4, 3, 3
        outputs = run_sweep(load_config(path, [], schema=SweepConfig), shard=parse_shard(f"{i}/3"))
        assert "scored" not in outputs  # a shard only generates
        parts.append(set(stored(outputs["store"])) - set().union(*parts))
    assert [len(p) for p in parts] == [8, 6, 6] and sum(asked) == 20
    problems = [{stored(outputs["store"])[k][0] for k in part} for part in parts]
    assert not problems[0] & problems[1] and not problems[1] & problems[2]  # each problem in one shard only
    asked.clear()
    merged = run_sweep(load_config(path, ["stages=[generate,score]"], schema=SweepConfig))
    assert asked == [] and pq.read_table(merged["scored"]).num_rows == 20  # nothing left to generate
    fresh = run_sweep(load_config(path, ["run_name=unsharded"], schema=SweepConfig))
    assert stored(fresh["store"]) == stored(merged["store"])  # bit for bit what one process generates
    for bad in ("3/3", "1", "-1/2", "a/b"):
        with pytest.raises(UserError, match="--shard must be I/N"):
            parse_shard(bad)
    with pytest.raises(UserError, match="splits the generate stage"):
        run_sweep(load_config(path, ["stages=[score]"], schema=SweepConfig), shard=(0, 2))


@pytest.mark.slow
def test_weights_changed_in_place_are_a_new_model(tmp_path, tiny_mixtral, problems_file, monkeypatch):
    """A local directory has no hub revision: the sample address carries a weights fingerprint, so
    retraining into the same directory regenerates instead of silently reusing the old samples."""
    import shutil

    from safetensors.torch import load_file, save_file

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_mixtral, model_dir)
    asked = count_requests(monkeypatch)
    path = recipe(tmp_path, str(model_dir), problems_file)
    run_sweep(load_config(path, [], schema=SweepConfig))
    run_sweep(load_config(path, [], schema=SweepConfig))
    assert sum(asked) == 40  # unchanged weights: the rerun generates nothing

    weights = next(model_dir.glob("*.safetensors"))
    tensors = load_file(weights)
    name = next(n for n in tensors if "embed" in n)
    tensors[name] = tensors[name] * 1.001  # a "training step"
    save_file(tensors, weights, metadata={"format": "pt"})
    outputs = run_sweep(load_config(path, [], schema=SweepConfig))
    assert sum(asked) == 80  # every sample generated again, into a store of its own
    revisions = {r["revision"] for d in Path(outputs["store"]).iterdir() for r in SampleStore(d).read().to_pylist()}
    assert len(revisions) == 2 and all(r.startswith("weights-") for r in revisions)


def test_weights_fingerprint_sees_one_changed_byte_in_whole_and_sampled_files(tmp_path, monkeypatch):
    from checkpoints_index import loading

    (tmp_path / "config.json").write_text("{}")
    blob = bytearray(os.urandom(1 << 20))
    (tmp_path / "model.safetensors").write_bytes(blob)
    first = loading.weights_fingerprint(tmp_path)
    assert loading.weights_fingerprint(tmp_path) == first
    blob[123_457] ^= 1  # small files are hashed whole: any byte counts
    (tmp_path / "model.safetensors").write_bytes(blob)
    assert loading.weights_fingerprint(tmp_path) != first

    monkeypatch.setattr(loading, "_FULL_HASH_BYTES", 1024)  # force the sampled mode for big checkpoints
    monkeypatch.setattr(loading, "_SAMPLES", 4)
    monkeypatch.setattr(loading, "_SAMPLE_BYTES", 1024)
    sampled = loading.weights_fingerprint(tmp_path)
    blob[0] ^= 1  # the first window is always read
    (tmp_path / "model.safetensors").write_bytes(blob)
    assert loading.weights_fingerprint(tmp_path) != sampled
    # Sampled or whole is decided on the checkpoint's total size, so many small shards are sampled too,
    # and a file smaller than the windows is read whole.
    small = bytearray(os.urandom(1000))
    (tmp_path / "model-2.safetensors").write_bytes(small)
    monkeypatch.setattr(loading, "_FULL_HASH_BYTES", 1 << 20)  # each file fits, the total does not
    sampled = loading.weights_fingerprint(tmp_path)
    blob[500_000] ^= 1  # between the 4 windows of the big shard: not read
    (tmp_path / "model.safetensors").write_bytes(blob)
    assert loading.weights_fingerprint(tmp_path) == sampled
    small[999] ^= 1
    (tmp_path / "model-2.safetensors").write_bytes(small)
    assert loading.weights_fingerprint(tmp_path) != sampled
    with pytest.raises(UserError, match="no weight files"):
        loading.weights_fingerprint(tmp_path / "nothing-here")


@pytest.mark.slow  # two sweeps and a killed child process
def test_sigkill_midway_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_mixtral, problems_file):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    killed_recipe = recipe(tmp_path, tiny_mixtral, problems_file, name="killed", sampling={"num_samples": 8})
    command = [sys.executable, "-m", "moelab.cli", "sweep", str(killed_recipe)]
    store_dir = tmp_path / "sweeps" / "killed" / "samples"
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not list(store_dir.glob("*/shard-*.parquet")):
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    shards_at_kill = list(store_dir.glob("*/shard-*.parquet"))
    assert process.returncode == -signal.SIGKILL and shards_at_kill
    partial = stored(store_dir)
    assert 0 < len(partial) < 80, "the kill should land midway; make the sweep longer if this fails"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = stored(store_dir)
    (model_dir,) = store_dir.iterdir()
    raw_rows = sum(pq.read_metadata(shard).num_rows for shard in model_dir.glob("shard-*.parquet"))
    assert raw_rows == 80 == len(after)  # no duplicates (even before the reader's de-duplication), no gaps
    assert sorted({(r[0], r[1]) for r in after.values()}) == sorted((f"p{i}", j) for i in range(10) for j in range(8))
    assert not list(store_dir.glob("*/.tmp-*"))

    reference = run_sweep(load_config(recipe(tmp_path, tiny_mixtral, problems_file, name="reference",
                                             sampling={"num_samples": 8}), [], schema=SweepConfig))
    assert stored(reference["store"]) == after


def test_closing_the_vllm_backend_collects_only_when_the_engine_outlives_it(monkeypatch):
    """Dropping the engine runs vLLM's own shutdown (which collects twice); a full collection more costs a
    second per model on 2 cores, so it runs only when something else still holds the engine."""
    import gc
    import weakref

    from inference.generation.backends import VLLMBackend

    class Engine:  # stands in for vllm.LLM
        pass

    collections: list[tuple] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    engine = Engine()
    freed = weakref.ref(engine)
    backend = VLLMBackend("", llm=engine)
    del engine
    backend.close()
    assert freed() is None and collections == [] and not hasattr(backend, "llm")
    shared = Engine()
    VLLMBackend("", llm=shared).close()
    assert len(collections) == 1


def test_bad_recipes_fail_before_any_work(tmp_path, tiny_mixtral, problems_file):
    import argparse

    from inference.sweep.cli import run as cli_run

    path = recipe(tmp_path, tiny_mixtral, problems_file)
    for override, message in [("stages=[generate,vote]", r"'stages\[1\]': Invalid value 'vote'"),
                              ("backend.type=tgi", "backend.type"),
                              ("sampling.num_samples=0", "num_samples"), ("sampling.top_pp=1", "top_pp"),
                              ("models=[no-such-model-d512]", "unknown checkpoint"),
                              ("scoring.best_of_n_score=reward_model", "scoring.reward_model")]:
        with pytest.raises(UserError, match=message):
            cli_run(argparse.Namespace(recipe=str(path), overrides=[override]))
    assert not (tmp_path / "sweeps" / "run" / "samples").exists()


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory):
    """A random 1-output LlamaForSequenceClassification with the byte-level tokenizer (no hub needed)."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from checkpoints_index.loading import byte_level_tokenizer

    out = tmp_path_factory.mktemp("tiny-rm")
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024, num_labels=1,
                         pad_token_id=2, bos_token_id=1, eos_token_id=2)
    LlamaForSequenceClassification(config).save_pretrained(out)
    byte_level_tokenizer().save_pretrained(out)
    return str(out)


def test_reward_model_scores_are_batched_cached_and_match_one_by_one(tmp_path, tiny_reward_model, monkeypatch):
    from inference.generation import reward_model

    questions = ["What is 2+3?", "What is 10-4?", "What is 2+3?"]
    completions = [" 2+3=5\n#### 5", " It is 6. #### 6", " no idea, a much longer rambling answer ..."]
    model, tokenizer = reward_model.load_reward_model(tiny_reward_model)
    text = reward_model.conversation_text(tokenizer, questions[0], completions[0])
    assert "What is 2+3?" in text and "#### 5" in text
    batched = reward_model.score_with_reward_model(model, tokenizer, questions, completions, batch_size=3)
    alone = [reward_model.score_with_reward_model(model, tokenizer, [q], [c], batch_size=1)[0]
             for q, c in zip(questions, completions)]
    assert batched == pytest.approx(alone, abs=1e-5)
    assert len(set(batched)) == 3

    keys = ["k0", "k1", "k2"]
    first = reward_model.reward_model_scores(tiny_reward_model, keys, questions, completions, tmp_path / "rm")
    assert first == pytest.approx(batched, abs=1e-5)

    def no_model(*args, **kwargs):
        raise AssertionError("cached scores must not load the reward model")

    monkeypatch.setattr(reward_model, "load_reward_model", no_model)
    assert reward_model.reward_model_scores(tiny_reward_model, keys[::-1], questions[::-1], completions[::-1],
                                            tmp_path / "rm") == first[::-1]


def test_all_stages_write_scores_metrics_and_plots(tmp_path, tiny_mixtral, tiny_reward_model, monkeypatch):
    """Generate -> score (rewards) -> reward-model column -> aggregate -> plot, on the tiny random model."""
    import csv

    path = recipe(tmp_path, tiny_mixtral, "toy", name="e2e",
                  stages=["generate", "score", "aggregate", "plot"],
                  data={"datasets": ["toy"], "task": None, "limit": 3, "toy_num_problems": 20},
                  sampling={"num_samples": 4, "max_new_tokens": 6, "greedy": True},
                  scoring={"reward_model": tiny_reward_model, "best_of_n_score": "reward_model"},
                  aggregate={"bootstrap": 50})
    outputs = run_sweep(load_config(path, [], schema=SweepConfig))
    scored = pq.read_table(outputs["scored"])
    assert scored.num_rows == 3 * 4 + 3
    for column in ["model", "problem_id", "sample_idx", "answer", "correct", "score", "num_tokens", "mean_logprob",
                   "status", "pred", "rm_score"]:
        assert column in scored.column_names
    assert scored.column("score").to_pylist() == scored.column("rm_score").to_pylist()
    assert set(scored.column("status").to_pylist()) <= {"correct", "wrong", "no_answer", "timeout", "error"}
    with open(outputs["metrics"]) as f:
        rows = list(csv.DictReader(f))
    sampled = {(r["strategy"], r["k"]) for r in rows if r["setting"] == "T0.8"}
    assert sampled == {(s, str(k)) for s in ["pass", "majority", "best_of_n", "weighted_majority"] for k in (1, 2, 4)}
    assert [(r["strategy"], r["k"]) for r in rows if r["setting"] == "greedy"] == [("pass", "1")]
    plots = sorted(p.name for p in outputs["plots"].glob("*.png"))
    assert plots == ["toy-T0.8-samples.png", "toy-T0.8-tokens.png"]
    assert all((outputs["plots"] / p).stat().st_size > 1000 for p in plots)
    # re-scoring reads the store only: a full rerun builds no backend and reproduces the scored table
    monkeypatch.setattr(sweep_module, "make_backend", lambda *a, **k: pytest.fail("rerun must not load the model"))
    again = run_sweep(load_config(path, [], schema=SweepConfig))
    assert pq.read_table(again["scored"]).equals(scored)


def toy_members() -> list[str]:
    from checkpoints_index.index import all_checkpoints

    return sorted(info.name for info in all_checkpoints() if info.domain == "toy")


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_toy_recipe_end_to_end_with_vllm(tmp_path):
    """The shipped toy recipe, shrunk: vLLM samples -> store -> scores -> metrics CSV -> plots."""
    import csv

    members = toy_members()
    if not members:
        pytest.skip("the toy family is not trained yet (checkpoints_index/toy/models/)")
    overrides = [f"models=[{members[0]}]", f"output_dir={tmp_path}", "data.limit=12", "sampling.num_samples=8",
                 "aggregate.bootstrap=100", "backend.chunk_size=64"]
    outputs = run_sweep(load_config(REPO / "configs" / "sweep" / "toy.yaml", overrides, schema=SweepConfig))
    samples = stored(outputs["store"])
    assert len(samples) == 12 * 8 + 12  # sampled + greedy
    with open(outputs["metrics"]) as f:
        rows = [r for r in csv.DictReader(f) if r["setting"] == "T0.8"]
    accuracy = {(r["strategy"], int(r["k"])): float(r["accuracy"]) for r in rows}
    assert accuracy[("pass", 8)] > 0  # a trained member solves some toy problems
    assert [accuracy[("pass", k)] for k in (1, 2, 4, 8)] == sorted(accuracy[("pass", k)] for k in (1, 2, 4, 8))
    assert accuracy[("pass", 8)] >= accuracy[("majority", 8)]
    assert {"toy-T0.8-samples.png", "toy-T0.8-tokens.png"} <= {p.name for p in outputs["plots"].iterdir()}
