"""Recipe schema of `moelab sweep` (kind `sweep`): cheap to import, no torch or vLLM here.

One recipe describes a whole test-time compute study: models x datasets x temperatures, N samples
per problem (every k <= N is estimated from those same samples), optionally greedy decoding as
well, and how to score, aggregate and plot. The defaults are the study's GSM8K setting
(`docs/study.md`, "Test-time compute as the study ran it"): 0-shot `Question: {q}\\nAnswer:`,
T=0.6, top_p=0.95, N=128, 1,024 new tokens, stop at `Question:` / `Q:`.

Every value is checked when the recipe loads (core.config): choices are `Literal` types over the
tuples the code that acts on them defines (imported, never restated), ranges are field bounds, and
`SweepConfig.cross_check` holds the rules between fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from core.config import MISSING, Dtype, DtypeOrAuto, RunInNamedDir, config_field
from core.errors import UserError
from inference.generation.backends import BACKEND_NAMES
from inference.generation.reward_model import REWARD_MODEL_KINDS
from inference.jobs.trackers import TRACKERS
from inference.ttc.aggregate import ESTIMATORS, VOTE_WEIGHTS
from inference.ttc.estimators import STRATEGIES
from rewards.rules import RULES
from tasks.prompts import PROMPT_STYLES, SHOT_MODES

STAGES = ("generate", "score", "aggregate", "plot")
BEST_OF_N_SCORES = ("mean_logprob", "reward_model")


@dataclass
class SweepDataConfig:
    datasets: list[str] = config_field(["gsm8k"], "datasets to sweep: gsm8k, math, math500, toy, or JSONL paths")
    split: str = config_field("test", "split of every dataset")
    limit: Optional[int] = config_field(None, "use only the first `limit` problems (after shuffling); null = all",
                                        at_least=1)
    shuffle_seed: Optional[int] = config_field(0, "shuffle problems with this seed before `limit` (the study: 0); "
                                                  "null keeps the file order", at_least=0)
    num_shots: int = config_field(0, "k-shot examples from the train split in front of every prompt (study: 0)",
                                  at_least=0)
    shots_seed: int = config_field(0, "seed drawing the k-shot examples", at_least=0)
    shots: Literal[SHOT_MODES] = config_field(
        "per_problem", "per_problem: a fresh seeded draw of k-shot examples for each problem "
        "(the study's generator, lm-eval's sampler); fixed: one set for all")
    prompt: Literal[PROMPT_STYLES] = config_field(
        "qa", "prompt style: qa = `Question: {q}\\nAnswer:` (GSM8K), minerva = "
        "`Problem:\\n{q}\\n\\nSolution:` with Minerva's 0/2/4 examples (the study's MATH)")
    task: Optional[str] = config_field(
        None, "answer checker task (gsm8k, math, toy) or a dataset name that has one; null = from the dataset "
              "table (tasks.datasets) or the rows' `task` field")
    toy_num_problems: int = config_field(1000, "problems generated for the `toy` dataset's split", at_least=1)


@dataclass
class SweepSamplingConfig:
    temperatures: list[float] = config_field([0.6], "sampling temperatures; each is its own setting", at_least=0)
    top_p: float = config_field(0.95, "nucleus sampling threshold", above=0, at_most=1)
    num_samples: int = config_field(128, "N samples per problem and temperature; estimators use every k <= N",
                                    at_least=1)
    max_new_tokens: int = config_field(1024, "completion length limit in tokens", at_least=1)
    stop: list[str] = config_field(["Question:", "Q:"], "stop strings (excluded from the stored completion)")
    greedy: bool = config_field(False, "also decode greedily (T=0, one sample per problem) as an extra setting")
    seed: int = config_field(0, "sweep seed; sample i of a prompt uses seed hash(seed, prompt) + i, so any "
                                "sample can be regenerated alone", at_least=0)


@dataclass
class SweepBackendConfig:
    type: Literal[tuple(BACKEND_NAMES)] = config_field(
        "vllm", "generation backend: vllm (offline engine), server (OpenAI-compatible "
        "`vllm serve`), hf (transformers generate, slow fallback)")
    dtype: DtypeOrAuto = config_field(
        "auto", "weights dtype for vllm/hf (auto, float32, bfloat16); CPU: float32 is fastest")
    chunk_size: int = config_field(1024, "samples per generate call and per store shard; a kill loses at most one",
                                   at_least=1)
    tensor_parallel_size: int = config_field(1, "vLLM tensor parallel GPUs per engine", at_least=1)
    data_parallel_size: int = config_field(1, "vLLM data parallel engine replicas", at_least=1)
    max_model_len: Optional[int] = config_field(None, "vLLM context limit (prompt + completion); null = model's",
                                                at_least=1)
    max_num_seqs: Optional[int] = config_field(None, "vLLM max sequences per engine step; null = vLLM default",
                                               at_least=1)
    enable_prefix_caching: bool = config_field(True, "vLLM prefix caching (the N samples of a prompt share it)")
    enforce_eager: Optional[bool] = config_field(None, "vLLM eager mode; null = false where CUDA is present (graph "
                                                       "capture), true on CPU (graphs there only add start-up time)")
    block_size: Optional[int] = config_field(None, "vLLM KV block size in tokens; prefix caching shares whole blocks "
                                                   "only. null = 32 on vLLM-CPU (its 128 shares no prompt shorter "
                                                   "than 129 tokens), vLLM's choice on GPU (16)", at_least=1)
    engine_kwargs: dict[str, Any] = config_field({}, "extra keyword arguments passed to vllm.LLM as is")
    server_url: str = config_field("http://127.0.0.1:8000", "base URL of the OpenAI-compatible server (shorthand for "
                                                            "a one-element server_urls)")
    server_urls: list[str] = config_field([], "base URLs of several servers (e.g. one `vllm serve` per node); "
                                              "each prompt's samples go to one of them. Non-empty: replaces "
                                              "server_url")
    server_model: Optional[str] = config_field(None, "model name the server serves; null = the model's source")
    concurrency: int = config_field(64, "server backend: requests in flight per server", at_least=1)
    request_timeout_s: float = config_field(600.0, "server backend: seconds per request before retrying", above=0)
    retries: int = config_field(5, "server backend: retries of a request on HTTP 408/409/429/5xx, timeouts and "
                                   "refused connections (openai client: back-off 0.5 s doubling to 8 s, or the "
                                   "server's Retry-After)", at_least=0)


@dataclass
class SweepScoringConfig:
    rule: Literal[RULES] = config_field(
        "lab", "whose verdict (rewards/rules.py): lab, study (the study's TTC evaluator: "
        "first-match regex / Minerva, is_equiv, no code, votes on strings), study_grpo "
        "(the study's GRPO reward); recorded in scored.parquet and metrics.csv")
    execute_code: bool = config_field(False, "rule=lab: execute `simple_math_problem()` / <llm-code> answers in "
                                             "the sandbox (the study's TTC evaluator never did; its GRPO reward did)")
    timeout_s: float = config_field(5.0, "hard deadline per verdict, seconds", above=0)
    reward_model: Optional[str] = config_field(None, "sequence-classification reward model (local dir or hub id) "
                                                     "scoring every sample for best-of-n; null = none")
    reward_model_kind: Literal[REWARD_MODEL_KINDS] = config_field(
        "auto", "reward-model adapter: armo (ArmoRM custom code, output.score), "
        "skywork (sigmoid of the logit), sequence_classification (the "
        "logit); auto = from the name")
    reward_model_trust_remote_code: Optional[bool] = config_field(
        None, "run the reward model repository's own code; null = only for kind armo")
    reward_model_dtype: Dtype = config_field("float32", "reward-model weights dtype (the study: bfloat16 on GPU)")
    reward_model_batch_size: int = config_field(16, "samples per reward-model forward pass (ArmoRM: one)", at_least=1)
    best_of_n_score: Literal[BEST_OF_N_SCORES] = config_field(
        "mean_logprob", "column best_of_n and weighted_majority rank by: "
        "mean_logprob, or reward_model (needs scoring.reward_model)")


@dataclass
class SweepAggregateConfig:
    k: Optional[list[int]] = config_field(None, "sample budgets k to estimate; null = powers of two up to N, plus N",
                                          at_least=1)
    strategies: list[Literal[STRATEGIES]] = config_field(["pass", "majority", "best_of_n", "weighted_majority"],
                                                         "estimators to compute")
    estimator: Literal[ESTIMATORS] = config_field("exact", "exact (expectation over k-subsets without replacement), "
                                           "monte_carlo, or prefix (the study's first-k numbers)")
    bootstrap: int = config_field(1000, "percentile-bootstrap resamples over problems for the CIs", at_least=0)
    vote_weight: Literal[VOTE_WEIGHTS] = config_field(
        "auto", "weighted_majority's weight per sample: auto (exp for mean_logprob; "
        "reward-model scores as they are when all are non-negative, else "
        "sigmoid; metrics.csv names the choice), exp, sigmoid, raw (the scores "
        "as they are: the study summed ArmoRM's)")
    seed: int = config_field(0, "seed of the bootstrap and of Monte-Carlo estimates", at_least=0)


@dataclass
class SweepConfig(RunInNamedDir):
    kind: str = config_field("sweep", "recipe type")
    run_name: str = config_field("sweep", "outputs go to <output_dir>/<run_name>/; rerunning the same name resumes")
    output_dir: str = config_field("outputs/sweeps", "parent directory of sweep runs")
    store_dir: Optional[str] = config_field(None, "sample store directory; null = <output_dir>/<run_name>/samples. "
                                                  "Share one between runs to reuse samples")
    models: list[str] = config_field(MISSING, "checkpoint index names, hub ids or local checkpoint directories")
    revision: Optional[str] = config_field(None, "hub revision of every model (part of each sample's address)")
    stages: list[Literal[STAGES]] = config_field(["generate", "score", "aggregate", "plot"],
                                     "stages to run, in order; e.g. [score, aggregate] re-scores without a model")
    data: SweepDataConfig = config_field(SweepDataConfig, "problems and prompts")
    sampling: SweepSamplingConfig = config_field(SweepSamplingConfig, "sampling settings")
    backend: SweepBackendConfig = config_field(SweepBackendConfig, "generation backend")
    scoring: SweepScoringConfig = config_field(SweepScoringConfig, "answer checking and reward-model scores")
    aggregate: SweepAggregateConfig = config_field(SweepAggregateConfig, "estimators and confidence intervals")
    report_to: list[Literal[TRACKERS]] = config_field([], "experiment trackers that receive metrics.csv after the "
                                                          "aggregate stage (accuracy vs k per curve; tensorboard "
                                                          "writes to <output_dir>/<run_name>/runs/)")
    project: str = config_field("moelab", "tracker project (wandb, trackio)")

    @staticmethod
    def cross_check(cfg: Any) -> None:
        """Rules between fields, and lists that must not be empty or repeat themselves."""
        if not cfg.models:
            raise UserError("models: list at least one checkpoint")
        if not cfg.sampling.temperatures and not cfg.sampling.greedy:
            raise UserError("sampling: set at least one temperature or greedy=true")
        if cfg.scoring.best_of_n_score == "reward_model" and not cfg.scoring.reward_model:
            raise UserError("scoring.best_of_n_score=reward_model needs scoring.reward_model=<dir or hub id>")
        for key, values in (("models", list(cfg.models)), ("data.datasets", list(cfg.data.datasets)),
                            ("sampling.temperatures", list(cfg.sampling.temperatures))):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise UserError(f"{key}: {repeated} listed more than once")
