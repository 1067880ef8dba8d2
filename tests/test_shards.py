"""`--shard I/N` of `moelab eval|taskloss|sweep` (inference/jobs/shards.py): which task gets what, bad shard strings,
shards writing into one output_dir, the unsharded collect run computing nothing done, and `moelab deficit`
reading what an array and its collect step wrote.

The spy tests replace the one call that loads a model (lm-eval's `simple_evaluate`, the task-loss scorer) to count
calls; the toy tests run the real toy members (checkpoints_index/toy) through the real command line with the
transformers backend and compare the collected tables with the unsharded run's, value for value.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import ClassVar

import pytest

from core.errors import UserError
from inference.jobs.shards import Shard, parse_shard, shard_items, sweep_work
from moelab.cli import main

REPO = Path(__file__).resolve().parents[1]
MEMBERS = ["toy-d64-E4-k2", "toy-d64-E8-k2", "toy-d64-E16-k2"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def table(path: Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------ the rule, the strings


def test_parse_shard_takes_i_of_n_and_nothing_else():
    assert parse_shard("3/8") == Shard(3, 8) == (3, 8) and str(parse_shard(" 0 / 1 ")) == "0/1"
    for bad in ("0/0", "3/2", "2/2", "a/b", "1", "-1/2", "1/2/3", ""):
        with pytest.raises(UserError, match=r"--shard must be I/N with 0 <= I < N"):
            parse_shard(bad)


@pytest.mark.parametrize("command", ["eval", "taskloss", "sweep"])
@pytest.mark.parametrize("bad", ["0/0", "3/2", "a/b"])
def test_bad_shard_is_one_line_and_status_2_before_the_recipe_loads(command, bad, capsys):
    # the recipe does not even exist: the shard string is checked first
    assert main([command, "no/such/recipe.yaml", "--shard", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--shard" in err and "I/N" in err and repr(bad) in err


def test_models_round_robin_disjoint_and_covering():
    models = [f"m{i}" for i in range(7)]
    for count in range(1, 10):
        parts = [shard_items(models, Shard(i, count)) for i in range(count)]
        assert sorted(m for part in parts for m in part) == sorted(models)
        assert parts[0][:2] == models[0:2 * count:count][:2]  # task 0: models 0, N, ...
    assert shard_items(models, None) == models and shard_items(models, (6, 8)) == ["m6"]
    assert shard_items(models, (7, 8)) == []  # more tasks than models: nothing to do


@pytest.mark.parametrize("num_models", [1, 2, 3, 5])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 8, 9])
def test_sweep_work_covers_every_model_and_problem_exactly_once(num_models, count):
    models = [f"m{i}" for i in range(num_models)]
    problems = [f"p{j}" for j in range(11)]
    seen: list[tuple[str, str]] = []
    for i in range(count):
        work = sweep_work(models, Shard(i, count))
        if num_models >= count:  # whole models, one task each
            assert all(part is None for _, part in work)
        else:  # one model per task, its problems split among the tasks sharing it
            assert [m for m, _ in work] == [models[i % num_models]]
        seen += [(m, p) for m, part in work for p in shard_items(problems, part)]
    assert sorted(seen) == sorted((m, p) for m in models for p in problems)
    assert sweep_work(models, None) == [(m, None) for m in models]


# ------------------------------------------------------------------------------------------------- spies: eval


def fake_results(tasks: dict, model_args_source: str) -> dict:
    """What `simple_evaluate` returns, reduced to what `tidy_rows` reads: a score per task from the model's name."""
    value = (sum(map(ord, model_args_source)) % 97) / 97
    return {"results": {t: {"exact_match,strict-match": value, "exact_match_stderr,strict-match": 0.01} for t in tasks},
            "n-shot": {t: 0 for t in tasks}, "n-samples": {t: {"effective": 3} for t in tasks},
            "_results_file": "results_fake.json"}


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    from inference.instruments.lm_eval_run import LAB_TASKS_DIR

    return TaskManager(include_path=str(LAB_TASKS_DIR))


@pytest.fixture
def eval_spy(monkeypatch, task_manager):
    import lm_eval.tasks

    from inference.instruments import lm_eval_run

    calls: list[str] = []
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", lambda include_path: task_manager)  # ~5 s each, built once

    def evaluate(cfg, task_manager, tasks, source, backend, lm_dir):
        calls.append(Path(source).name)
        return fake_results(tasks, Path(source).name)

    monkeypatch.setattr(lm_eval_run, "_evaluate", evaluate)
    return calls


@pytest.mark.slow
def test_eval_shards_then_collect_evaluates_nothing_done(tmp_path, eval_spy, capsys):
    out = tmp_path / "eval"
    args = ["eval", "configs/eval/toy.yaml", f"models={json.dumps(MEMBERS)}", "tasks=[toy]", "limit=3",
            "backend.type=hf", f"output_dir={out}"]
    for i in range(2):
        assert main([*args, "--shard", f"{i}/2"]) == 0
    assert eval_spy == [MEMBERS[0], MEMBERS[2], MEMBERS[1]]  # task 0: models 0 and 2; task 1: model 1
    assert not (out / "results.csv").exists()  # a task writes no table
    assert "once all 2 are, run the same command without --shard" in capsys.readouterr().out
    assert main([*args, "--shard", "0/2"]) == 0 and len(eval_spy) == 3  # a finished task again: a no-op
    assert main([*args, "--shard", "5/8"]) == 0 and len(eval_spy) == 3  # more tasks than models: nothing to do
    assert main(args) == 0 and len(eval_spy) == 3  # the collect run evaluates nothing
    rows = table(out / "results.csv")
    assert [r["model"] for r in rows] == MEMBERS and all(r["num_experts"] for r in rows)

    # a task killed while writing leaves only a temporary (core.files); a damaged file is not done either
    done = out / MEMBERS[1] / "tasks" / "toy.json"
    done.rename(done.with_name(".tmp-toy.json"))
    (out / MEMBERS[2] / "tasks" / "toy.json").write_text('{"key": "')
    assert main(args) == 0 and eval_spy[3:] == [MEMBERS[1], MEMBERS[2]]
    assert table(out / "results.csv") == rows


# --------------------------------------------------------------------------------------------- spies: taskloss


class FakeScorer:
    """A task-loss scorer whose losses depend on the model and the example only (no model loads)."""

    name = "fake"
    calls: ClassVar[list[tuple[str, int, int]]] = []

    def __init__(self, source: str) -> None:
        self.source = Path(source).name

    def score(self, examples, first_index=0):
        from inference.instruments.taskloss import ExampleLoss

        FakeScorer.calls.append((self.source, first_index, len(examples)))
        return [ExampleLoss(first_index + i, 1.0 + len(self.source) / 10 + (first_index + i) / 100,
                            len(e["answer"].split()) + 1, len(e["answer"].encode()), 5) for i, e in enumerate(examples)]

    def close(self) -> None:
        pass


@pytest.mark.slow
def test_taskloss_shards_then_collect_scores_nothing_done(tmp_path, monkeypatch):
    from inference.instruments import taskloss

    FakeScorer.calls = []
    monkeypatch.setattr(taskloss, "make_scorer", lambda backend, source: FakeScorer(source))
    out = tmp_path / "taskloss"
    args = ["taskloss", "configs/taskloss/toy.yaml", f"models={json.dumps(MEMBERS)}", "limit=6", "chunk_size=4",
            f"output_dir={out}", "backend.type=hf"]
    for i in range(3):
        assert main([*args, "--shard", f"{i}/3"]) == 0
    assert sorted(c[0] for c in FakeScorer.calls if c[1] == 0) == sorted(MEMBERS) and not (out / "taskloss.csv").exists()
    scored = len(FakeScorer.calls)
    assert main([*args, "--shard", "1/3"]) == 0 and len(FakeScorer.calls) == scored  # a finished task: a no-op
    assert main(args) == 0 and len(FakeScorer.calls) == scored  # collect: nothing scored again
    rows = table(out / "taskloss.csv")
    assert [r["model"] for r in rows] == MEMBERS and {r["num_examples"] for r in rows} == {"6"}

    # a kill mid-append leaves a cut last line: it is not taken as done, that one example is scored again
    examples = out / MEMBERS[1] / "toy" / "examples.jsonl"
    lines = examples.read_text().splitlines()
    examples.write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])
    assert main(args) == 0 and FakeScorer.calls[scored:] == [(MEMBERS[1], 5, 1)]
    assert table(out / "taskloss.csv") == rows


# -------------------------------------------------------------------------- the toy members, the real command line


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    """eval, taskloss and sweep over two toy members, each run unsharded (`one/`) and as an array of N tasks plus
    the collect run (`array/`); the collect runs are spied: nothing may generate, evaluate or score a model."""
    from inference.instruments import lm_eval_run, taskloss
    from inference.sweep import run as sweep

    root = tmp_path_factory.mktemp("arrays")
    members = MEMBERS[:2]
    common = {
        "eval": ["configs/eval/toy.yaml", "tasks=[toy]", "limit=3", "backend.type=hf", "backend.batch_size=8"],
        "taskloss": ["configs/taskloss/toy.yaml", "limit=6", "backend.type=hf"],
        "sweep": ["configs/sweep/toy.yaml", "data.limit=4", "sampling.num_samples=2", "sampling.max_new_tokens=24",
                  "sampling.greedy=false", "backend.type=hf", "backend.chunk_size=8", "aggregate.bootstrap=50",
                  "stages=[generate,score,aggregate]"],
    }
    tasks = {"eval": 2, "taskloss": 2, "sweep": 3}  # the sweep: fewer models than tasks, so problems split too

    def args(kind: str, where: str) -> list[str]:
        return [kind, common[kind][0], f"models={json.dumps(members)}", f"output_dir={root / where / kind}",
                *common[kind][1:]]

    for kind in common:
        assert main(args(kind, "one")) == 0
        for i in range(tasks[kind]):
            assert main([*args(kind, "array"), "--shard", f"{i}/{tasks[kind]}"]) == 0
    with pytest.MonkeyPatch.context() as patch:
        def refuse(*_args, **_kwargs):
            raise AssertionError("the collect run computed something the array had done")

        patch.setattr(lm_eval_run, "_evaluate", refuse)
        patch.setattr(taskloss, "make_scorer", refuse)
        patch.setattr(sweep, "make_backend", refuse)
        for kind in common:
            assert main(args(kind, "array")) == 0
    return {"root": root, "members": members}


@pytest.mark.slow  # 3 jobs x (one run + a 2- or 3-task array + collect) on the toy members
@pytest.mark.parametrize("kind, table_file", [("eval", "results.csv"), ("taskloss", "taskloss.csv"),
                                              ("sweep", "toy/metrics.csv")])
def test_array_then_collect_equals_the_unsharded_run(arrays, kind, table_file):
    one, array = (table(arrays["root"] / where / kind / table_file) for where in ("one", "array"))
    assert one and array == one
    assert {r["model"] for r in array} == set(arrays["members"])


@pytest.mark.slow
def test_deficit_reads_what_the_arrays_wrote(arrays, tmp_path):
    from core.config import load_config
    from moelab.deficit import run_deficit
    from moelab.deficit_schema import DeficitConfig

    array = arrays["root"] / "array"
    overrides = [f"models={json.dumps(arrays['members'])}", f"output_dir={tmp_path}", "run_name=run",
                 f"eval.output={array / 'eval'}", f"taskloss.output={array / 'taskloss'}",
                 f"sweep.output={array / 'sweep' / 'toy'}", "grpo.recipe=null", "memorization.eval_task=null",
                 "memorization.loss_task=null", "analysis.bootstrap=50"]
    report = run_deficit(load_config(REPO / "configs/deficit/toy.yaml", overrides, schema=DeficitConfig))
    rows = table(report.parent / "deficit.csv")
    for member in arrays["members"]:
        measures = {r["measure"] for r in rows if r["model"] == member}
        assert {"reasoning_accuracy", "reasoning_loss"} <= measures, measures
        assert any(m.startswith("before_majority@") for m in measures), measures  # the sweep's metrics

    uncollected = tmp_path / "uncollected"
    (uncollected / arrays["members"][0]).mkdir(parents=True)  # what a task leaves: per-model folders, no table
    with pytest.raises(UserError, match="without --shard to collect"):
        run_deficit(load_config(REPO / "configs/deficit/toy.yaml", [*overrides, f"eval.output={uncollected}"],
                                schema=DeficitConfig))
