"""`moelab sweep`: models x datasets x temperatures x N samples -> store -> scores -> metrics -> plots.

The stages only talk through files, in one direction (a stage reads what the one before it wrote, never back):

    plan      every (model, dataset, setting, problem, sample index) with its prompt, seed and key
    generate  the planned samples missing from the store, chunk by chunk, one shard per chunk
    score     store -> `scored.parquet` (answer cluster, correct, status, pred, score per sample)
    aggregate scored.parquet -> `metrics.csv` (estimators of `inference.ttc.aggregate`)
    plot      metrics.csv -> `plots/*.png`

The plan is a pure function of the recipe, so a rerun after a kill (or with a larger N) computes
the same keys, finds most of them in the store, and generates only the rest, in the same chunk
composition as before. Scoring reads completions from the store and never loads a model.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from core.errors import UserError
from core.files import atomic_write
from inference.generation.backends import GenerationBackend, GenerationRequest, SamplingSettings, make_backend
from inference.generation.store import SampleStore, sample_key, sample_seed, text_hash
from inference.jobs.shards import Shard, announce, shard_items, sweep_work
from inference.sweep.figures import draw_plots
from inference.sweep.helpers import SweepHelpers


@dataclass(frozen=True)
class Setting:
    """One sampling configuration of a sweep: N samples per problem at one temperature (or greedy)."""

    sampling: SamplingSettings
    num_samples: int

    @property
    def label(self) -> str:
        return "greedy" if self.sampling.greedy else f"T{self.sampling.temperature:g}"


@dataclass(frozen=True)
class PlannedSample:
    key: str
    model: str
    dataset: str
    problem_id: str
    sample_idx: int
    prompt: str
    prompt_template: str
    seed: int
    setting: Setting

    def request(self) -> GenerationRequest:
        return GenerationRequest(prompt=self.prompt, seed=self.seed, sampling=self.setting.sampling, key=self.key)


@dataclass
class DatasetPrompts:
    name: str
    task: str
    template: str
    problems: list[dict]
    prompts: list[str]


# ------------------------------------------------------------------------------------------------------ planning


def settings_from_config(cfg: Any) -> list[Setting]:
    s = cfg.sampling
    stop = tuple(s.stop)
    settings = [Setting(SamplingSettings(float(t), float(s.top_p), int(s.max_new_tokens), stop), int(s.num_samples))
                for t in s.temperatures]
    if s.greedy:
        settings.append(Setting(SamplingSettings(0.0, 1.0, int(s.max_new_tokens), stop), 1))
    return settings


def load_dataset_prompts(cfg: Any) -> list[DatasetPrompts]:
    """Problems and rendered prompts of every dataset of the recipe (cheap: no model involved)."""
    from tasks.datasets import load_problems
    from tasks.prompts import format_prompt, prompt_shots

    d = cfg.data
    loaded = []
    for name in d.datasets:
        toy_options = {"num_problems": d.toy_num_problems} if name == "toy" else {}
        # the rows carry their checker task (tasks.datasets.DATASETS); data.task, when set, overrides it
        problems = load_problems(name, split=d.split, limit=d.limit, shuffle_seed=d.shuffle_seed, task=d.task,
                                 **toy_options)
        if not problems:
            raise UserError(f"dataset '{name}' ({d.split}) has no problems")
        tasks = sorted({p["task"] for p in problems})
        if len(tasks) > 1:
            raise UserError(f"dataset '{name}': its rows name several checker tasks ({', '.join(tasks)}); a sweep "
                            f"scores a dataset with one: split the file, or set data.task")
        if not tasks:
            raise UserError(f"dataset '{name}' (split {d.split!r}) has no problems")
        task = tasks[0]
        try:
            shots, template = prompt_shots(d.prompt, d.num_shots, d.shots, d.shots_seed, len(problems),
                                           lambda: load_problems(name, split="train", task=task, **toy_options))
        except ValueError as err:  # Minerva prompts exist 0-, 2- and 4-shot only
            raise UserError(f"data.num_shots: {err}") from None
        prompts = [format_prompt(p["question"], style=d.prompt, shots=s) for p, s in zip(problems, shots)]
        loaded.append(DatasetPrompts(name, task, template, problems, prompts))
    return loaded


def plan_samples(model: str, revision: str | None, data: DatasetPrompts, setting: Setting,
                 base_seed: int) -> list[PlannedSample]:
    """Every sample of one (model, dataset, setting), problem-major then sample index: a pure function."""
    sampling = setting.sampling.as_dict()
    planned = []
    for problem, prompt in zip(data.problems, data.prompts):
        for idx in range(setting.num_samples):
            seed = sample_seed(base_seed, prompt, idx)
            planned.append(PlannedSample(
                key=sample_key(model, revision, prompt, sampling, seed, idx), model=model, dataset=data.name,
                problem_id=str(problem["id"]), sample_idx=idx, prompt=prompt, prompt_template=data.template,
                seed=seed, setting=setting))
    return planned


# ---------------------------------------------------------------------------------------------------- generation


def store_rows(planned: Sequence[PlannedSample], results: Sequence[Any], revision: str | None,
               backend_name: str) -> list[dict]:
    import json

    rows = []
    now = time.time()
    for plan, result in zip(planned, results):
        if result.request.key != plan.key:
            raise RuntimeError("backend returned results out of request order")
        s = plan.setting.sampling
        rows.append({
            "key": plan.key, "model": plan.model, "revision": revision, "dataset": plan.dataset,
            "problem_id": plan.problem_id, "sample_idx": plan.sample_idx, "prompt_template": plan.prompt_template,
            "prompt_hash": text_hash(plan.prompt), "temperature": s.temperature, "top_p": s.top_p,
            "max_new_tokens": s.max_new_tokens, "stop": json.dumps(list(s.stop)), "seed": plan.seed,
            "completion": result.completion, "num_tokens": result.num_tokens, "prompt_tokens": result.prompt_tokens,
            "cumulative_logprob": result.cumulative_logprob, "mean_logprob": result.mean_logprob,
            "finish_reason": result.finish_reason, "backend": backend_name, "created_at": now})
    return rows


def generate_missing(store: SampleStore, planned: Sequence[PlannedSample],
                     backend_factory: Callable[[], GenerationBackend], chunk_size: int, revision: str | None = None,
                     desc: str = "generate") -> int:
    """Generate the planned samples the store lacks, one chunk per `generate` call and per shard.

    The backend is built only if something is missing, so a finished sweep reruns without a model.
    Returns the number of samples generated.
    """
    from tqdm.auto import tqdm

    have = store.keys()
    missing = [p for p in planned if p.key not in have]
    if not missing:
        return 0
    backend = backend_factory()
    try:
        with tqdm(total=len(missing), desc=desc, unit="sample", dynamic_ncols=True) as bar:
            for start in range(0, len(missing), chunk_size):
                chunk = missing[start:start + chunk_size]
                results = backend.generate([p.request() for p in chunk])
                store.write(store_rows(chunk, results, revision, backend.name))
                bar.update(len(chunk))
    finally:
        backend.close()
    return len(missing)


def backend_options(cfg: Any, source: str) -> dict[str, Any]:
    b = cfg.backend
    if b.type == "vllm":
        return dict(dtype=b.dtype, revision=_hub_revision(cfg, source), tensor_parallel_size=b.tensor_parallel_size,
                    data_parallel_size=b.data_parallel_size, max_model_len=b.max_model_len,
                    max_num_seqs=b.max_num_seqs, enable_prefix_caching=b.enable_prefix_caching,
                    enforce_eager=b.enforce_eager, block_size=b.block_size, engine_kwargs=dict(b.engine_kwargs))
    if b.type == "server":
        return dict(base_urls=list(b.server_urls) or [b.server_url], concurrency=b.concurrency,
                    timeout_s=b.request_timeout_s, retries=b.retries)
    return dict(dtype="float32" if b.dtype == "auto" else b.dtype, revision=_hub_revision(cfg, source))


def _hub_revision(cfg: Any, source: str) -> str | None:
    return None if Path(source).is_dir() else cfg.revision


# ------------------------------------------------------------------------------------------------------- scoring


def scored_table(store: SampleStore, planned: Sequence[PlannedSample], datasets: Sequence[DatasetPrompts],
                 cfg: Any) -> Any:
    """Every planned sample with its verdict: the table the estimators read (one row per sample)."""
    import pyarrow as pa

    samples = store.read(keys=[p.key for p in planned],
                         columns=["completion", "num_tokens", "prompt_tokens", "mean_logprob", "finish_reason"])
    by_key = {k: i for i, k in enumerate(samples.column("key").to_pylist())}
    lost = [p for p in planned if p.key not in by_key]
    if lost:
        raise UserError(f"{len(lost)} planned samples are not in the store {store.root} (first: {lost[0].model}, "
                        f"{lost[0].dataset}, problem {lost[0].problem_id}); run the 'generate' stage first")
    completions = samples.column("completion").to_pylist()
    # the study's rules take their gold from the raw solution, as the study did (`rewards.rules`)
    gold_field = "gold" if cfg.scoring.rule == "lab" else "solution"
    golds = {d.name: {str(p["id"]): p[gold_field] for p in d.problems} for d in datasets}
    tasks = {d.name: d.task for d in datasets}
    rows: dict[str, list] = {c: [] for c in ["model", "dataset", "temperature", "setting", "problem_id",
                                             "sample_idx", "answer", "correct", "score", "num_tokens",
                                             "mean_logprob", "status", "pred", "finish_reason", "key",
                                             "prompt_tokens"]}
    verdicts: list[dict] = [{}] * len(planned)
    for name, task in tasks.items():  # one scorer call per dataset: it dedups answers across all samples
        index = [i for i, p in enumerate(planned) if p.dataset == name]
        if not index:
            continue
        results = score_completions(task, [golds[name][planned[i].problem_id] for i in index],
                                    [completions[by_key[planned[i].key]] for i in index],
                                    problem_ids=[planned[i].problem_id for i in index],
                                    execute_code=cfg.scoring.execute_code, timeout_s=cfg.scoring.timeout_s,
                                    rule=cfg.scoring.rule)
        for i, verdict in zip(index, results):
            verdicts[i] = verdict
    num_tokens = samples.column("num_tokens").to_pylist()
    prompt_tokens = samples.column("prompt_tokens").to_pylist()  # the FLOPs axis counts them (inference.ttc.compute)
    mean_logprob = samples.column("mean_logprob").to_pylist()
    finish = samples.column("finish_reason").to_pylist()
    for p, verdict in zip(planned, verdicts):
        j = by_key[p.key]
        rows["model"].append(p.model)
        rows["dataset"].append(p.dataset)
        rows["temperature"].append(p.setting.sampling.temperature)
        rows["setting"].append(p.setting.label)
        rows["problem_id"].append(p.problem_id)
        rows["sample_idx"].append(p.sample_idx)
        rows["answer"].append(verdict["cluster"])
        rows["correct"].append(bool(verdict["correct"]))
        rows["status"].append(verdict["status"])
        rows["pred"].append(verdict["pred"])
        rows["num_tokens"].append(num_tokens[j])
        rows["prompt_tokens"].append(prompt_tokens[j])
        rows["mean_logprob"].append(mean_logprob[j])
        rows["score"].append(mean_logprob[j])
        rows["finish_reason"].append(finish[j])
        rows["key"].append(p.key)
    table = pa.table(rows)
    table = table.append_column("rule", pa.array([cfg.scoring.rule] * len(planned), pa.string()))
    if cfg.scoring.reward_model:
        from inference.generation.reward_model import reward_model_scores

        questions = {d.name: {str(p["id"]): p["question"] for p in d.problems} for d in datasets}
        rm = reward_model_scores(
            cfg.scoring.reward_model, keys=rows["key"],
            questions=[questions[p.dataset][p.problem_id] for p in planned],
            completions=[completions[by_key[p.key]] for p in planned], cache_dir=store.root / "reward_scores",
            batch_size=cfg.scoring.reward_model_batch_size, dtype=cfg.scoring.reward_model_dtype,
            kind=cfg.scoring.reward_model_kind, trust_remote_code=cfg.scoring.reward_model_trust_remote_code)
        table = table.append_column("rm_score", pa.array(rm, pa.float64()))
        if cfg.scoring.best_of_n_score == "reward_model":
            table = table.set_column(table.schema.get_field_index("score"), "score", pa.array(rm, pa.float64()))
    return table


def score_completions(task: str, golds: Sequence[str], completions: Sequence[str], problem_ids: Sequence[str],
                      execute_code: bool, timeout_s: float, rule: str = "lab") -> list[dict]:
    """THE call site of the answer checker (`rewards`): one dict per sample with status, pred, cluster, correct."""
    from tqdm.auto import tqdm

    from rewards import score_samples

    with tqdm(total=len(completions), desc=f"score ({task})", unit="sample", dynamic_ncols=True) as bar:
        def progress(fraction: float) -> None:
            bar.update(round(fraction * len(completions)) - bar.n)

        verdicts = score_samples(task, list(golds), list(completions), problem_ids=list(problem_ids),
                                 execute_code=execute_code, deadline_s=timeout_s, progress=progress, rule=rule)
    return [{"status": v.status, "pred": v.pred, "cluster": v.cluster, "correct": v.status == "correct"}
            for v in verdicts]


def write_parquet_atomic(table: Any, path: Path) -> Path:
    import pyarrow.parquet as pq

    return atomic_write(path, lambda temp: pq.write_table(table, temp))


# ------------------------------------------------------------------------------------------------- aggregate/plot


def aggregate_and_plot(scored_path: Path, out_dir: Path, cfg: Any, stages: Sequence[str],
                       helpers: SweepHelpers | None = None) -> dict[str, Path]:
    """THE call site of the estimators (`inference.ttc.aggregate`) and plots (`inference.ttc.plots`); the votes
    and the figures in `helpers`' processes when given (`inference.sweep.helpers`), else here."""
    outputs: dict[str, Path] = {}
    metrics_path = out_dir / "metrics.csv"
    if "aggregate" in stages:
        if helpers is None:
            _aggregate(scored_path, metrics_path, cfg)
        else:
            helpers.votes(lambda workers: _aggregate(scored_path, metrics_path, cfg, workers))
        outputs["metrics"] = metrics_path
        trackers = list(getattr(cfg, "report_to", None) or [])
        if trackers:  # after the file is written: a tracker never shows a table the run does not hold
            from inference.jobs.trackers import log_metrics_table

            log_metrics_table(metrics_path, trackers, run_name=cfg.run_name, project=cfg.project,
                              logging_dir=out_dir / "runs")
    if "plot" in stages:
        if not metrics_path.is_file():
            raise UserError(f"{metrics_path} does not exist: run the 'aggregate' stage first")
        outputs["plots"] = draw_plots(metrics_path, out_dir / "plots", map if helpers is None else helpers.map)
    return outputs


def _aggregate(scored_path: Path, metrics_path: Path, cfg: Any, workers: int | Executor = 1) -> None:
    """Metrics of every (dataset, setting), each model a group: `inference.ttc.aggregate` columns + dataset,
    setting. `workers`: the voting strategies' processes (the same metrics for any)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from inference.ttc.aggregate import COLUMNS, aggregate_samples, default_ks, write_csv

    with pq.ParquetFile(scored_path) as scored_file:  # one file: no pyarrow.dataset import (0.1-0.25 s)
        scored = scored_file.read()
    rows: list[dict] = []
    groups = sorted(set(zip(scored.column("dataset").to_pylist(), scored.column("setting").to_pylist())))
    for dataset, setting in groups:
        part = scored.filter(pc.and_(pc.equal(scored.column("dataset"), dataset),
                                     pc.equal(scored.column("setting"), setting)))
        num_samples = 1 if setting == "greedy" else cfg.sampling.num_samples
        ks = [k for k in (cfg.aggregate.k or default_ks(num_samples)) if k <= num_samples]
        strategies = ["pass"] if setting == "greedy" else list(cfg.aggregate.strategies)
        for row in aggregate_samples(part, ks=ks, strategies=strategies, estimator=cfg.aggregate.estimator,
                                     bootstrap=cfg.aggregate.bootstrap, seed=cfg.aggregate.seed, score_column="score",
                                     vote_weight=_vote_weight(cfg), workers=workers):
            rows.append({**row, "dataset": dataset, "setting": setting, "rule": cfg.scoring.rule})
    write_csv(rows, metrics_path, columns=[*COLUMNS, "dataset", "setting", "rule"])


def _vote_weight(cfg: Any) -> str:
    """`auto` by what the `score` column holds: exp for mean_logprob (unless best_of_n_score=reward_model);
    reward-model scores as `resolve_vote_weight` decides from their signs (metrics.csv names the choice)."""
    if cfg.aggregate.vote_weight != "auto":
        return cfg.aggregate.vote_weight
    return "exp" if cfg.scoring.best_of_n_score == "mean_logprob" else "auto"


# ------------------------------------------------------------------------------------------------------- the job


def model_store(root: Path, model: str, revision: str | None) -> SampleStore:
    """One store directory per model (readable name + hash of name and revision): a model's samples are read
    without scanning every other model's shards. Keys stay global, so directories may be merged freely."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name if Path(model).is_dir() else model).strip("_")
    return SampleStore(root / f"{slug}-{text_hash(f'{model}|{revision}')[:8]}")


def _backend_factory(cfg: Any, model: str, source: str) -> Callable[[], GenerationBackend]:
    def build() -> GenerationBackend:
        target = (cfg.backend.server_model or source) if cfg.backend.type == "server" else source
        try:
            return make_backend(cfg.backend.type, target, **backend_options(cfg, source))
        except (OSError, ValueError) as err:
            if Path(source).is_dir():
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"cannot load '{model}' from {source} ({first}). Offline? Download it where there is "
                            f"internet (`hf download {source} --local-dir DIR`) and pass DIR as the model, or "
                            f"register it with the checkpoint index") from None

    return build


def run_sweep(cfg: Any, shard: Shard | tuple[int, int] | None = None) -> dict[str, Path]:
    """Run the stages of a validated sweep recipe; returns the paths it wrote.

    Plans are rebuilt per model (cheap hashing) rather than held for all models at once: the study's
    grid is ~2.7M samples. All models generate before any is scored, so a GPU never waits on the CPU scorer.
    `shard=(i, n)` (`moelab sweep --shard i/n`, one task of a cluster array) runs only the generate stage,
    for its models or problems (`inference.jobs.shards.sweep_work`); the run without a shard then generates
    nothing the shards stored and scores it all. A run that aggregates or plots starts its helper
    processes first (`inference.sweep.helpers`): they get ready while the engine works.
    """
    if shard is not None or not ("aggregate" in cfg.stages or "plot" in cfg.stages):
        return _run_stages(cfg, shard, None)
    with SweepHelpers() as helpers:
        return _run_stages(cfg, shard, helpers)


def _run_stages(cfg: Any, shard: Shard | tuple[int, int] | None, helpers: SweepHelpers | None) -> dict[str, Path]:
    import pyarrow as pa

    from checkpoints_index.loading import model_source, weights_version
    from core.config import save_resolved_config

    out_dir = Path(cfg.output_dir) / cfg.run_name
    sources = {m: model_source(m, cfg.revision) for m in cfg.models}  # unknown names fail here, before any work
    # a model retrained in place gets new addresses, so it never reuses the old weights' samples
    revisions = {m: weights_version(sources[m], cfg.revision) for m in cfg.models}
    datasets = load_dataset_prompts(cfg)
    settings = settings_from_config(cfg)
    store_root = Path(cfg.store_dir or out_dir / "samples")
    save_resolved_config(cfg, out_dir)
    outputs: dict[str, Path] = {"out_dir": out_dir, "store": store_root}

    def plan(model: str) -> list[PlannedSample]:
        return [p for d in datasets for s in settings
                for p in plan_samples(model, revisions[model], d, s, cfg.sampling.seed)]

    if shard is not None and "generate" not in cfg.stages:
        raise UserError(f"--shard splits the generate stage, which stages={list(cfg.stages)} does not run; "
                        f"score, aggregate and plot without --shard")
    if helpers is not None:
        helpers.start()  # planned: they get ready while the engine starts
    if "generate" in cfg.stages:
        work = sweep_work(list(cfg.models), shard)
        announce(shard, [model for model, _ in work], len(cfg.models))
        for i, (model, problems) in enumerate(work):
            store = model_store(store_root, model, revisions[model])
            if shard is None:  # shards share the store: another shard's temporary is a write in flight
                store.remove_temporaries()  # leftovers of a killed run (single writer per store)
            mine = shard_items(plan(model), problems, key=lambda p: (p.dataset, p.problem_id))
            generate_missing(store, mine, _backend_factory(cfg, model, sources[model]), cfg.backend.chunk_size,
                             revisions[model], desc=f"[{i + 1}/{len(work)}] {model}"
                             + (f" problems {problems}" if problems else ""))
        if shard is not None:
            return outputs
    scored_path = out_dir / "scored.parquet"
    if "score" in cfg.stages:
        tables = [scored_table(model_store(store_root, m, revisions[m]), plan(m), datasets, cfg) for m in cfg.models]
        write_parquet_atomic(pa.concat_tables(tables), scored_path)
        outputs["scored"] = scored_path
    if "aggregate" in cfg.stages or "plot" in cfg.stages:
        if not scored_path.is_file():
            raise UserError(f"{scored_path} does not exist: run the 'score' stage first")
        outputs.update(aggregate_and_plot(scored_path, out_dir, cfg, cfg.stages, helpers))
    return outputs
